import DICOM

/// The coded concepts of the structured report, each with where it comes from.
enum ReportCodes {
    /// The RSNA 2019 labels as findings. `any` is SNOMED CT 1386000 "Intracranial hemorrhage", as the
    /// DICOM content mapping resource (PS3.16, in pydicom 3.0.2's `sr/_concepts_dict.py`) and HL7 FHIR's
    /// examples list it. PS3.16 names no code for the five subtypes, and their SNOMED CT codes could
    /// not be checked against a terminology server offline, so they are local codes (PS3.3 8.2: a
    /// private scheme designator starting "99") until a verified mapping replaces them.
    static let localScheme = "99ICHTRIAGE"
    static let localSchemeName = "ICH triage RSNA 2019 labels"
    static func finding(_ label: String) -> Code {
        switch label {
        case "any": Code("1386000", "SCT", "Intracranial hemorrhage")
        case "epidural": Code("epidural", localScheme, "Epidural hemorrhage")
        case "intraparenchymal": Code("intraparenchymal", localScheme, "Intraparenchymal hemorrhage")
        case "intraventricular": Code("intraventricular", localScheme, "Intraventricular hemorrhage")
        case "subarachnoid": Code("subarachnoid", localScheme, "Subarachnoid hemorrhage")
        case "subdural": Code("subdural", localScheme, "Subdural hemorrhage")
        default: Code(label, localScheme, label)
        }
    }

    /// LOINC 24725-4 "Head CT" (PS3.16 CID 646, as pydicom 3.0.2 lists it).
    static let procedure = Code("24725-4", "LN", "Head CT")
    /// SNOMED CT 82334004 "Indeterminate" (PS3.16 CID 4220): the study-level answer when no series was triageable.
    static let indeterminate = Code("82334004", "SCT", "Indeterminate")
}
