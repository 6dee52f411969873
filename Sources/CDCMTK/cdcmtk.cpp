// DCMTK behind a C boundary: no C++ exception and no DCMTK type crosses it.
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dccodec.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/oflog/oflog.h"

#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "CDCMTK.h"

struct cdcmtk_object {
    DcmFileFormat file;
    std::string transferSyntax;
    bool decompressed = false;
};

namespace {

// Codec registration and logger configuration are process-wide in DCMTK.
void initialiseOnce() {
    static std::once_flag once;
    std::call_once(once, [] {
        // DCMTK otherwise prints E:/W: lines on stderr for every odd file.
        OFLog::configure(OFLogger::OFF_LOG_LEVEL);
        // Some writers store every element as UN; reread those with their dictionary VR, as pydicom does.
        dcmEnableUnknownVRConversion.set(OFTrue);
        DcmRLEDecoderRegistration::registerCodecs();
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
    });
}

uint16_t readLE16(const uint8_t *p) { return uint16_t(p[0] | (p[1] << 8)); }
uint16_t readBE16(const uint8_t *p) { return uint16_t((p[0] << 8) | p[1]); }

// DCMTK happily parses arbitrary bytes as a headerless data set, so decide
// "is this DICOM at all" ourselves: a Part-10 preamble, or a data set that
// starts with a File Meta (0002) or Identifying (0008) group tag.
bool looksLikeDICOM(const uint8_t *bytes, size_t length) {
    if (length >= 132 && std::memcmp(bytes + 128, "DICM", 4) == 0) return true;
    if (length < 8) return false;
    uint16_t le = readLE16(bytes), be = readBE16(bytes);
    return le == 0x0002 || le == 0x0008 || be == 0x0008;
}

DcmElement *findTopLevel(const cdcmtk_object *object, uint16_t group, uint16_t element) {
    DcmDataset *dataset = const_cast<cdcmtk_object *>(object)->file.getDataset();
    DcmElement *found = nullptr;
    if (dataset->findAndGetElement(DcmTagKey(group, element), found, OFFalse).bad()) return nullptr;
    return found;
}

}  // namespace

extern "C" cdcmtk_status cdcmtk_read(const uint8_t *bytes, size_t length, cdcmtk_object **out) {
    *out = nullptr;
    if (bytes == nullptr || !looksLikeDICOM(bytes, length)) return CDCMTK_NOT_DICOM;
    try {
        initialiseOnce();
        auto *object = new cdcmtk_object();
        DcmInputBufferStream stream;
        stream.setBuffer(bytes, offile_off_t(length));
        stream.setEos();
        object->file.transferInit();
        // Load every value now: the caller's buffer is not retained, so nothing may be read lazily.
        OFCondition status = object->file.read(stream, EXS_Unknown, EGL_noChange, OFstatic_cast(Uint32, -1));
        object->file.transferEnd();
        if (status.bad()) {
            delete object;
            // With the end of the buffer marked, running out of bytes mid-element
            // surfaces as one of these rather than as a dedicated "truncated" code.
            if (status == EC_StreamNotifyClient || status == EC_InvalidStream ||
                status == EC_SequDelimitationItemMissing)
                return CDCMTK_TRUNCATED;
            return CDCMTK_MALFORMED;
        }
        object->transferSyntax = DcmXfer(object->file.getDataset()->getOriginalXfer()).getXferID();
        *out = object;
        return CDCMTK_OK;
    } catch (const std::bad_alloc &) {
        return CDCMTK_OUT_OF_MEMORY;
    } catch (...) {
        return CDCMTK_INTERNAL;
    }
}

extern "C" void cdcmtk_free(cdcmtk_object *object) { delete object; }

extern "C" const char *cdcmtk_transfer_syntax(const cdcmtk_object *object) {
    return object->transferSyntax.c_str();
}

extern "C" cdcmtk_status cdcmtk_string(const cdcmtk_object *object, uint16_t group, uint16_t element,
                                       char *buffer, size_t capacity, size_t *length) {
    *length = 0;
    try {
        DcmElement *found = findTopLevel(object, group, element);
        if (found == nullptr || found->getLength() == 0) return CDCMTK_ABSENT;
        OFString value;
        if (found->getOFStringArray(value).bad()) return CDCMTK_BAD_VALUE;
        *length = value.length();
        if (value.length() + 1 > capacity) return CDCMTK_BAD_VALUE;
        std::memcpy(buffer, value.c_str(), value.length() + 1);
        return CDCMTK_OK;
    } catch (const std::bad_alloc &) {
        return CDCMTK_OUT_OF_MEMORY;
    } catch (...) {
        return CDCMTK_INTERNAL;
    }
}

extern "C" cdcmtk_status cdcmtk_integer(const cdcmtk_object *object, uint16_t group, uint16_t element,
                                        unsigned long index, int64_t *value) {
    try {
        DcmElement *found = findTopLevel(object, group, element);
        if (found == nullptr || found->getLength() == 0 || index >= found->getVM()) return CDCMTK_ABSENT;
        OFCondition status;
        switch (found->ident()) {
            case EVR_US: { Uint16 v; status = found->getUint16(v, index); *value = v; break; }
            case EVR_SS: { Sint16 v; status = found->getSint16(v, index); *value = v; break; }
            case EVR_UL: { Uint32 v; status = found->getUint32(v, index); *value = v; break; }
            case EVR_SL:
            case EVR_IS: { Sint32 v; status = found->getSint32(v, index); *value = v; break; }
            default: return CDCMTK_BAD_VALUE;
        }
        return status.good() ? CDCMTK_OK : CDCMTK_BAD_VALUE;
    } catch (...) {
        return CDCMTK_INTERNAL;
    }
}

extern "C" int cdcmtk_has_element(const cdcmtk_object *object, uint16_t group, uint16_t element) {
    return findTopLevel(object, group, element) != nullptr;
}

extern "C" cdcmtk_status cdcmtk_has_pixel_data(const cdcmtk_object *object) {
    // Encapsulated pixel data has an undefined length, so presence is all we can ask here.
    return findTopLevel(object, 0x7FE0, 0x0010) != nullptr ? CDCMTK_OK : CDCMTK_NO_PIXEL_DATA;
}

extern "C" cdcmtk_status cdcmtk_pixel_info(const cdcmtk_object *object, int *encapsulated, size_t *native_length,
                                           int *decodable) {
    *encapsulated = 0;
    *native_length = 0;
    *decodable = 0;
    try {
        DcmElement *pixels = findTopLevel(object, 0x7FE0, 0x0010);
        if (pixels == nullptr) return CDCMTK_NO_PIXEL_DATA;
        E_TransferSyntax original = const_cast<cdcmtk_object *>(object)->file.getDataset()->getOriginalXfer();
        DcmXfer xfer(original);
        // Encapsulated pixel data reports no length here (its fragments are items), so only a native value can be empty.
        if (!xfer.isEncapsulated() && pixels->getLength() == 0) return CDCMTK_NO_PIXEL_DATA;
        if (xfer.isEncapsulated()) {
            *encapsulated = 1;
            *decodable = DcmCodecList::canChangeCoding(original, EXS_LittleEndianExplicit) ? 1 : 0;
        } else {
            *native_length = pixels->getLength();
            *decodable = 1;
        }
        return CDCMTK_OK;
    } catch (...) {
        return CDCMTK_INTERNAL;
    }
}

extern "C" cdcmtk_status cdcmtk_pixel_data(cdcmtk_object *object, unsigned bits_allocated,
                                           const uint8_t **data, size_t *length) {
    *data = nullptr;
    *length = 0;
    try {
        DcmDataset *dataset = object->file.getDataset();
        if (!object->decompressed) {
            // Decompression happens here; a syntax without a registered codec
            // (JPEG 2000 in free DCMTK) fails with "cannot change representation".
            if (dataset->chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad())
                return CDCMTK_UNSUPPORTED_TRANSFER_SYNTAX;
            object->decompressed = true;
        }
        DcmElement *pixels = findTopLevel(object, 0x7FE0, 0x0010);
        if (pixels == nullptr || pixels->getLength() == 0) return CDCMTK_NO_PIXEL_DATA;
        if (bits_allocated == 16) {
            Uint16 *words = nullptr;
            if (pixels->getUint16Array(words).bad() || words == nullptr) return CDCMTK_BAD_VALUE;
            *data = reinterpret_cast<const uint8_t *>(words);
        } else {
            Uint8 *bytes = nullptr;
            if (pixels->getUint8Array(bytes).bad() || bytes == nullptr) return CDCMTK_BAD_VALUE;
            *data = bytes;
        }
        *length = pixels->getLength();
        return CDCMTK_OK;
    } catch (const std::bad_alloc &) {
        return CDCMTK_OUT_OF_MEMORY;
    } catch (...) {
        return CDCMTK_INTERNAL;
    }
}
