// The TID 1500 report behind CDCMTKReport.h, on dcmsr's TID 1500 / 1501 classes (as
// DCMTK's own tsrcmr test builds one) and DSRDocument for the SR IOD's modules.
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/cmr/tid1500.h"
#include "dcmtk/dcmsr/codes/dcm.h"
#include "dcmtk/dcmsr/dsrdoc.h"
#include "dcmtk/oflog/oflog.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "CDCMTKReport.h"
#include "part10.hpp"

namespace {

// Thrown inside the builder only, caught at the C boundary.
struct Refused {
    std::string what;
};

void check(const OFCondition &condition, const char *what) {
    if (condition.bad()) throw Refused{std::string(what) + ": " + condition.text()};
}

OFString text(const char *value) { return value ? OFString(value) : OFString(); }

DSRCodedEntryValue coded(const cdcmtk_code &code) {
    return DSRCodedEntryValue(text(code.value), text(code.scheme), text(code.meaning));
}

bool hasCode(const cdcmtk_code &code) { return code.value && *code.value; }

// The observation context and procedure (TID 1500 rows 2-4), then one TID 1501 group per label.
void fill(TID1500_MeasurementReport &report, const cdcmtk_report &r, const cdcmtk_report_finding *findings, size_t count) {
    check(report.setLanguage(CID5000_Languages::English), "language");
    check(report.getObservationContext().addDeviceObserver(text(r.device_uid), text(r.device_name), text(r.manufacturer),
                                                           text(r.algorithm_name)),
          "device observer");
    if (hasCode(r.procedure)) check(report.addProcedureReported(coded(r.procedure)), "procedure reported");
    // Units of a probability: UCUM "1", no units (CID 7181).
    const CID7181_AbstractMultiDimensionalImageModelComponentUnits unity(DSRCodedEntryValue("1", "UCUM", "no units"));
    const CID7469_GenericIntensityAndSizeMeasurements probability(DSRCodedEntryValue(CODE_DCM_Probability));
    // Present / Absent, SNOMED CT as CID 240 lists them.
    const DSRCodedEntryValue present("52101004", "SCT", "Present"), absent("272519000", "SCT", "Absent");
    for (size_t i = 0; i < count; i++) {
        const cdcmtk_report_finding &f = findings[i];
        if (i > 0) check(report.addIndividualMeasurements(OFFalse), "measurement group");
        TID1500_MeasurementReport::TID1501_Measurements &group = report.getIndividualMeasurements();
        check(group.setTrackingIdentifier(text(f.tracking_identifier)), "tracking identifier");
        check(group.setTrackingUniqueIdentifier(text(f.tracking_uid)), "tracking UID");
        check(group.setFinding(coded(f.finding)), "finding");
        check(group.addMeasurement(probability, TID1500_MeasurementReport::TID1501_Measurements::MeasurementValue(
                                                    text(f.probability), unity)),
              "probability");
        if (f.key != nullptr) {
            DSRImageReferenceValue image(text(f.key->sop_class_uid), text(f.key->sop_instance_uid));
            if (f.key->frame > 0) image.getFrameList().addItem(Sint32(f.key->frame));
            check(group.getMeasurement().addImage(CODE_DCM_SourceOfMeasurement, image), "source of measurement");
        }
        check(group.addQualitativeEvaluation(coded(f.finding), f.present ? present : absent), "evaluation");
    }
    if (hasCode(r.evaluation_concept))
        check(report.addQualitativeEvaluation(coded(r.evaluation_concept), coded(r.evaluation_value)), "study evaluation");
    for (const char *const *line = r.comments; line && *line; line++)
        check(report.addQualitativeEvaluation(DSRCodedEntryValue(CODE_DCM_Comment), OFString(*line)), "comment");
}

// TID 300 includes the algorithm (TID 4019) as concept modifiers of each measurement; DCMTK's TID 300
// class has no setter for it, so the rows go into the expanded tree, under every Probability.
void addAlgorithm(DSRDocumentTree &tree, const cdcmtk_report &r) {
    for (size_t node = tree.gotoNamedNode(CODE_DCM_Probability); node > 0;
         node = tree.gotoNextNamedNode(CODE_DCM_Probability)) {
        check(tree.addChildContentItem(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, CODE_DCM_AlgorithmName),
              "algorithm name");
        check(tree.getCurrentContentItem().setStringValue(text(r.algorithm_name)), "algorithm name");
        check(tree.addContentItem(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, CODE_DCM_AlgorithmVersion),
              "algorithm version");
        check(tree.getCurrentContentItem().setStringValue(text(r.algorithm_version)), "algorithm version");
        tree.goUp();
    }
}

void header(DSRDocument &doc, const cdcmtk_report &r, const cdcmtk_report_finding *findings, size_t count) {
    check(doc.createNewSeriesInStudy(text(r.study_instance_uid)), "study instance UID");
    if (r.specific_character_set) check(doc.setSpecificCharacterSet(text(r.specific_character_set)), "character set");
    // Copied values are the original study's: a value DCMTK would reject there is kept, not checked again.
    const OFBool asIs = OFFalse;
    doc.setPatientName(text(r.patient_name), asIs);
    doc.setPatientID(text(r.patient_id), asIs);
    doc.setPatientBirthDate(text(r.patient_birth_date), asIs);
    doc.setPatientSex(text(r.patient_sex), asIs);
    doc.setStudyDate(text(r.study_date), asIs);
    doc.setStudyTime(text(r.study_time), asIs);
    doc.setStudyID(text(r.study_id), asIs);
    doc.setAccessionNumber(text(r.accession_number), asIs);
    doc.setReferringPhysicianName(text(r.referring_physician_name), asIs);
    doc.setStudyDescription(text(r.study_description), asIs);
    check(doc.setSeriesDescription(text(r.series_description)), "series description");
    check(doc.setSeriesNumber(std::to_string(r.series_number).c_str()), "series number");
    check(doc.setInstanceNumber(std::to_string(r.instance_number).c_str()), "instance number");
    check(doc.setManufacturer(text(r.manufacturer)), "manufacturer");
    check(doc.setSoftwareVersions(text(r.software_versions)), "software versions");
    check(doc.setContentDate(text(r.content_date)), "content date");
    check(doc.setContentTime(text(r.content_time)), "content time");
    check(doc.setTimezoneOffsetFromUTC("+0000"), "timezone");
    if (r.local_scheme && *r.local_scheme) {
        DSRCodingSchemeIdentificationList &schemes = doc.getCodingSchemeIdentification();
        check(schemes.addItem(text(r.local_scheme)), "coding scheme");
        check(schemes.setCodingSchemeName(text(r.local_scheme_name)), "coding scheme name");
        check(schemes.setCodingSchemeResponsibleOrganization(text(r.manufacturer)), "coding scheme organization");
    }
    // Evidence: every image the report references, by study, series and instance.
    for (size_t i = 0; i < count; i++) {
        const cdcmtk_image_reference *key = findings[i].key;
        if (key == nullptr) continue;
        check(doc.getCurrentRequestedProcedureEvidence().addItem(text(r.study_instance_uid), text(key->series_instance_uid),
                                                                 text(key->sop_class_uid), text(key->sop_instance_uid)),
              "evidence");
    }
}

}  // namespace

extern "C" cdcmtk_status cdcmtk_report_write(const cdcmtk_report *r, const cdcmtk_report_finding *findings, size_t count,
                                             uint8_t **bytes, size_t *length, char *error, size_t error_length) {
    *bytes = nullptr;
    *length = 0;
    if (error && error_length) error[0] = 0;
    try {
        static std::once_flag once;
        std::call_once(once, [] { OFLog::configure(OFLogger::OFF_LOG_LEVEL); });
        TID1500_MeasurementReport report(CMR_CID7021::ImagingMeasurementReport);
        fill(report, *r, findings, count);
        if (!report.isValid()) throw Refused{"the measurement report is incomplete"};
        DSRDocument doc;
        check(doc.setTreeFromRootTemplate(report, OFTrue), "document tree");
        addAlgorithm(doc.getTree(), *r);
        header(doc, *r, findings, count);
        auto *dataset = new DcmDataset();
        OFCondition written = doc.write(*dataset);
        // DCMTK made its own series and instance UIDs and stamped the creation time; ours are derived from the
        // study and result version, and the creation time is the result's, so the same result is the same object.
        if (written.good()) written = dataset->putAndInsertString(DCM_SeriesInstanceUID, text(r->series_instance_uid).c_str());
        if (written.good()) written = dataset->putAndInsertString(DCM_SOPInstanceUID, text(r->sop_instance_uid).c_str());
        if (written.good()) written = dataset->putAndInsertString(DCM_InstanceCreationDate, text(r->content_date).c_str());
        if (written.good()) written = dataset->putAndInsertString(DCM_InstanceCreationTime, text(r->content_time).c_str());
        if (written.good()) written = dataset->putAndInsertString(DCM_SeriesDate, text(r->content_date).c_str());
        if (written.good()) written = dataset->putAndInsertString(DCM_SeriesTime, text(r->content_time).c_str());
        if (written.bad()) {
            delete dataset;
            check(written, "write");
        }
        std::vector<uint8_t> out;
        if (!cdcmtk::part10(dataset, EXS_LittleEndianExplicit, out)) throw Refused{"part 10: the file meta cannot be built"};
        *bytes = static_cast<uint8_t *>(std::malloc(out.size()));
        if (*bytes == nullptr) return CDCMTK_OUT_OF_MEMORY;
        std::memcpy(*bytes, out.data(), out.size());
        *length = out.size();
        return CDCMTK_OK;
    } catch (const Refused &refused) {
        if (error && error_length) std::snprintf(error, error_length, "%s", refused.what.c_str());
        return CDCMTK_BAD_VALUE;
    } catch (const std::bad_alloc &) {
        return CDCMTK_OUT_OF_MEMORY;
    } catch (...) {
        return CDCMTK_INTERNAL;
    }
}

extern "C" void cdcmtk_buffer_free(uint8_t *bytes) { std::free(bytes); }
