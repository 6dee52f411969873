// A plain C view of DCMTK: read one DICOM object from memory, look up
// top-level attributes, and hand out its pixel data uncompressed (JPEG 2000
// through OpenJPEG, which DCMTK 3.6.7 lacks).
// Everything DICOM-specific beyond that (which attributes matter, what a
// valid CT slice is) lives in the Swift `DICOM` target.
#ifndef CDCMTK_H
#define CDCMTK_H

#include <stddef.h>
#include <stdint.h>

#include "CDCMTKNetwork.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CDCMTK_OK = 0,
    /// The bytes do not start like a DICOM file or data set.
    CDCMTK_NOT_DICOM,
    /// The bytes start like DICOM but end in the middle of an element.
    CDCMTK_TRUNCATED,
    /// The bytes start like DICOM but DCMTK cannot parse them.
    CDCMTK_MALFORMED,
    /// The attribute is not present (or has no value).
    CDCMTK_ABSENT,
    /// The attribute is present but cannot be read as requested.
    CDCMTK_BAD_VALUE,
    CDCMTK_NO_PIXEL_DATA,
    /// No registered codec can decompress the pixel data.
    CDCMTK_UNSUPPORTED_TRANSFER_SYNTAX,
    /// The compressed pixel data cannot be decoded (a corrupt codestream, missing fragments).
    CDCMTK_CORRUPT_PIXEL_DATA,
    /// The codestream's size, component count or precision contradicts the image attributes.
    CDCMTK_PIXEL_DATA_MISMATCH,
    CDCMTK_OUT_OF_MEMORY,
    CDCMTK_INTERNAL
} cdcmtk_status;

typedef struct cdcmtk_object cdcmtk_object;

/// Parses `length` bytes (a Part-10 file, with or without preamble, or a bare
/// data set). The bytes are not retained. On success `*out` must be released
/// with `cdcmtk_free`.
cdcmtk_status cdcmtk_read(const uint8_t *bytes, size_t length, cdcmtk_object **out);

/// As `cdcmtk_read`, but stops at the top-level Pixel Data element: its presence, length and
/// encapsulation are known, its value is neither copied nor parsed (a deflated object is read whole).
/// Everything but `cdcmtk_pixel_data` answers as for a whole read.
cdcmtk_status cdcmtk_read_header(const uint8_t *bytes, size_t length, cdcmtk_object **out);

void cdcmtk_free(cdcmtk_object *object);

/// The UID of the transfer syntax the object was encoded in; owned by the object.
const char *cdcmtk_transfer_syntax(const cdcmtk_object *object);

/// Copies the whole value of a top-level string attribute (multiple values
/// stay separated by backslashes), NUL-terminated. `*length` receives the
/// value's length; a value that does not fit in `capacity` is CDCMTK_BAD_VALUE.
cdcmtk_status cdcmtk_string(const cdcmtk_object *object, uint16_t group, uint16_t element,
                            char *buffer, size_t capacity, size_t *length);

/// Reads value `index` of a top-level integer attribute (US, SS, UL, SL or IS).
cdcmtk_status cdcmtk_integer(const cdcmtk_object *object, uint16_t group, uint16_t element,
                             unsigned long index, int64_t *value);

/// 1 when the top-level data set holds the element (with or without a value), else 0.
int cdcmtk_has_element(const cdcmtk_object *object, uint16_t group, uint16_t element);

/// CDCMTK_OK when the top-level data set has a Pixel Data element with a
/// value, CDCMTK_NO_PIXEL_DATA otherwise, CDCMTK_UNSUPPORTED_TRANSFER_SYNTAX
/// when the file meta names a syntax DCMTK does not know (its pixel data
/// cannot be found). Cheap: decompresses nothing.
cdcmtk_status cdcmtk_has_pixel_data(const cdcmtk_object *object);

/// What the object says about its pixel data without decompressing it:
/// `*encapsulated` is 1 for a compressed transfer syntax, `*native_length`
/// the value's length in bytes otherwise (0 when encapsulated), and
/// `*decodable` 1 when the pixels can be brought to native form (no codec
/// needed, or a registered one). CDCMTK_NO_PIXEL_DATA when there is none.
cdcmtk_status cdcmtk_pixel_info(const cdcmtk_object *object, int *encapsulated, size_t *native_length, int *decodable);

/// Points `*data` at frame `frame` (0-based) of `frames`, as native-byte-order values; `*length`
/// counts the bytes from there to the end of the decoded values. Valid until the next call or
/// `cdcmtk_free`. Native pixel data is not copied; a single-frame compressed object is
/// decompressed once in place; a multi-frame compressed object has one frame decoded per call.
/// `bits_allocated` selects 8- or 16-bit word access. A JPEG 2000 codestream whose header
/// disagrees with `rows`, `columns` and `bits_allocated` (or has more than one component) is
/// CDCMTK_PIXEL_DATA_MISMATCH, before any decoding.
cdcmtk_status cdcmtk_pixel_data(cdcmtk_object *object, unsigned rows, unsigned columns, unsigned bits_allocated,
                                unsigned long frame, unsigned long frames, const uint8_t **data, size_t *length);

/// Copies a string attribute that a multi-frame object's functional groups hold for frame `frame`
/// (0-based): `group,element` inside the first item of the macro sequence `macro_group,macro_element`,
/// looked up in the frame's Per-Frame Functional Groups item, then in the Shared Functional Groups.
/// CDCMTK_ABSENT when neither has it. Buffer handling as `cdcmtk_string`.
cdcmtk_status cdcmtk_frame_string(const cdcmtk_object *object, unsigned long frame, uint16_t macro_group,
                                  uint16_t macro_element, uint16_t group, uint16_t element, char *buffer, size_t capacity,
                                  size_t *length);

#ifdef __cplusplus
}
#endif

// After the status codes, which the report builder returns.
#include "CDCMTKReport.h"

#endif
