// A triage result as a DICOM Structured Report (TID 1500, Measurement Report), built
// with DCMTK's dcmsr and its TID 1500 classes and written as Part-10 bytes. What goes
// into it (codes, UIDs, which slices) is the Swift side's; no DCMTK type crosses here.
#ifndef CDCMTK_REPORT_H
#define CDCMTK_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "CDCMTK.h"

#ifdef __cplusplus
extern "C" {
#endif

/// A coded concept: code value, coding scheme designator, code meaning.
typedef struct {
    const char *value;
    const char *scheme;
    const char *meaning;
} cdcmtk_code;

/// A slice the report points at: the image of a label's highest probability.
typedef struct {
    const char *series_instance_uid;
    const char *sop_class_uid;
    const char *sop_instance_uid;
    /// 0 for a single-frame image; else the 1-based frame.
    int frame;
} cdcmtk_image_reference;

/// One label: a TID 1501 measurement group with the label as its finding, a qualitative
/// evaluation (present or absent at the threshold) and the probability as a TID 300
/// measurement whose source is `key` and whose algorithm is the report's.
typedef struct {
    const char *tracking_identifier;
    const char *tracking_uid;
    cdcmtk_code finding;
    int present;
    /// As a decimal string (DS), so the Swift side decides the digits.
    const char *probability;
    /// NULL when no slice was assessed for the label.
    const cdcmtk_image_reference *key;
} cdcmtk_report_finding;

typedef struct {
    /// The original study's identity, copied; NULL or empty leaves a type 2 attribute empty.
    const char *study_instance_uid, *study_date, *study_time, *study_id, *accession_number,
        *referring_physician_name, *study_description;
    const char *patient_name, *patient_id, *patient_birth_date, *patient_sex;
    const char *specific_character_set;
    /// This object.
    const char *series_instance_uid, *sop_instance_uid, *series_description;
    int series_number, instance_number;
    /// When the result was made (DA and TM).
    const char *content_date, *content_time;
    const char *manufacturer, *software_versions;
    /// The device observer (TID 1004) and the algorithm (TID 4019).
    const char *device_uid, *device_name, *algorithm_name, *algorithm_version;
    cdcmtk_code procedure;
    /// A study-level qualitative evaluation (TID 1500 row 12), or all NULL.
    cdcmtk_code evaluation_concept, evaluation_value;
    /// A private coding scheme the findings use ("99..."), declared in the Coding Scheme Identification Sequence; or NULL.
    const char *local_scheme, *local_scheme_name;
    /// Study-level remarks (TID 1500 row 13, Comment), each a line; NULL-terminated list or NULL.
    const char *const *comments;
} cdcmtk_report;

/// Builds the report over `count` findings and writes it (explicit VR little endian, with
/// File Meta) into a buffer the caller frees with `cdcmtk_buffer_free`. CDCMTK_BAD_VALUE
/// names in `error` what DCMTK refused.
cdcmtk_status cdcmtk_report_write(const cdcmtk_report *report, const cdcmtk_report_finding *findings, size_t count,
                                  uint8_t **bytes, size_t *length, char *error, size_t error_length);

void cdcmtk_buffer_free(uint8_t *bytes);

#ifdef __cplusplus
}
#endif

#endif
