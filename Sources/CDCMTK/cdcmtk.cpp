// DCMTK (and OpenJPEG, for the JPEG 2000 that DCMTK 3.6.7 cannot decode) behind a C
// boundary: no C++ exception and no DCMTK or OpenJPEG type crosses it.
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dccodec.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/oflog/oflog.h"

#include <openjpeg-2.5/openjpeg.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "CDCMTK.h"

struct cdcmtk_object {
    DcmFileFormat file;
    std::string transferSyntax;
    bool decompressed = false;
    /// The file meta names a transfer syntax DCMTK 3.6.7 does not know (other than HTJ2K): it then
    /// guesses an uncompressed encoding and cannot see the pixel data, so none is reported.
    bool unknownSyntax = false;
    /// The last frame decoded one at a time (JPEG 2000 through OpenJPEG, a multi-frame object through
    /// DCMTK's codecs), in native byte order, and which frame it is.
    std::vector<uint8_t> decoded;
    unsigned long decodedFrame = 0;
    /// Read by `cdcmtk_read_header`: parsing stopped at the top-level Pixel Data element, whose value
    /// was neither copied nor parsed; what the header needs of it is kept here.
    bool headerOnly = false;
    bool headerPixelData = false;
    /// The element's length field (0xFFFFFFFF: encapsulated, undefined length).
    uint32_t headerPixelLength = 0;
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

// ---- JPEG 2000 through OpenJPEG (DCMTK 3.6.7 has no codec for it) ----

// High-Throughput JPEG 2000: lossless, lossless with RPCL progression, and lossy-capable. DCMTK 3.6.7
// does not know these UIDs, so it reads such a data set as explicit little endian; its pixel data, of
// undefined length, is still parsed as fragments, and OpenJPEG 2.5 decodes the HT codestreams in them.
bool isHighThroughputJPEG2000(const std::string &uid) {
    return uid == "1.2.840.10008.1.2.4.201" || uid == "1.2.840.10008.1.2.4.202" || uid == "1.2.840.10008.1.2.4.203";
}

// JPEG 2000 lossless-only and lossy, and HTJ2K.
bool isJPEG2000(const std::string &uid) {
    return uid == "1.2.840.10008.1.2.4.90" || uid == "1.2.840.10008.1.2.4.91" || isHighThroughputJPEG2000(uid);
}

struct MemoryStream {
    const uint8_t *bytes;
    size_t length;
    size_t offset;
};

OPJ_SIZE_T streamRead(void *buffer, OPJ_SIZE_T count, void *user) {
    auto *s = static_cast<MemoryStream *>(user);
    if (s->offset >= s->length) return static_cast<OPJ_SIZE_T>(-1);
    size_t n = std::min(static_cast<size_t>(count), s->length - s->offset);
    std::memcpy(buffer, s->bytes + s->offset, n);
    s->offset += n;
    return n;
}

OPJ_OFF_T streamSkip(OPJ_OFF_T count, void *user) {
    auto *s = static_cast<MemoryStream *>(user);
    if (count < 0) {
        size_t back = std::min(static_cast<size_t>(-count), s->offset);
        s->offset -= back;
        return -static_cast<OPJ_OFF_T>(back);
    }
    size_t n = std::min(static_cast<size_t>(count), s->length - s->offset);
    s->offset += n;
    return static_cast<OPJ_OFF_T>(n);
}

OPJ_BOOL streamSeek(OPJ_OFF_T position, void *user) {
    auto *s = static_cast<MemoryStream *>(user);
    if (position < 0 || static_cast<size_t>(position) > s->length) return OPJ_FALSE;
    s->offset = static_cast<size_t>(position);
    return OPJ_TRUE;
}

void quiet(const char *, void *) {}

// Where frame `frame` (0-based) of `frames` starts and ends among the fragments (items 1... of the
// sequence; item 0 is the Basic Offset Table): the table's offsets when it has them, one fragment per
// frame when the counts match, else each fragment that opens a codestream (SOC marker or JP2
// signature) starts a frame.
cdcmtk_status frameFragments(DcmPixelSequence *sequence, unsigned long frame, unsigned long frames, unsigned long &first,
                             unsigned long &last) {
    unsigned long fragments = sequence->card() > 0 ? sequence->card() - 1 : 0;
    if (fragments == 0 || frame >= frames) return CDCMTK_CORRUPT_PIXEL_DATA;
    if (frames == 1) {
        first = 1;
        last = fragments;
        return CDCMTK_OK;
    }
    DcmPixelItem *table = nullptr;
    std::vector<unsigned long> starts;
    if (sequence->getItem(table, 0).good() && table != nullptr && table->getLength() >= 4 * frames) {
        Uint8 *raw = nullptr;
        if (table->getUint8Array(raw).bad() || raw == nullptr) return CDCMTK_CORRUPT_PIXEL_DATA;
        // Offsets count bytes from the first fragment's item tag: 8 header bytes plus the value per item.
        std::vector<Uint32> offsets(table->getLength() / 4);
        for (size_t i = 0; i < offsets.size(); i++)
            offsets[i] = Uint32(raw[4 * i]) | Uint32(raw[4 * i + 1]) << 8 | Uint32(raw[4 * i + 2]) << 16 | Uint32(raw[4 * i + 3]) << 24;
        if (offsets.size() != frames) return CDCMTK_CORRUPT_PIXEL_DATA;
        size_t position = 0, next = 0;
        for (unsigned long i = 1; i <= fragments; i++) {
            DcmPixelItem *item = nullptr;
            if (sequence->getItem(item, i).bad() || item == nullptr) return CDCMTK_CORRUPT_PIXEL_DATA;
            if (next < offsets.size() && position == offsets[next]) {
                starts.push_back(i);
                next++;
            } else if (next < offsets.size() && position > offsets[next]) {
                return CDCMTK_CORRUPT_PIXEL_DATA;
            }
            position += 8 + item->getLength();
        }
        if (starts.size() != frames) return CDCMTK_CORRUPT_PIXEL_DATA;
    } else if (fragments == frames) {
        for (unsigned long i = 1; i <= fragments; i++) starts.push_back(i);
    } else {
        static const uint8_t jp2Signature[] = {0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20};
        for (unsigned long i = 1; i <= fragments; i++) {
            DcmPixelItem *item = nullptr;
            Uint8 *bytes = nullptr;
            if (sequence->getItem(item, i).bad() || item == nullptr) return CDCMTK_CORRUPT_PIXEL_DATA;
            if (item->getLength() < 8 || item->getUint8Array(bytes).bad() || bytes == nullptr) continue;
            if ((bytes[0] == 0xFF && bytes[1] == 0x4F && bytes[2] == 0xFF && bytes[3] == 0x51) ||
                std::memcmp(bytes, jp2Signature, 8) == 0)
                starts.push_back(i);
        }
        if (starts.size() != frames || starts[0] != 1) return CDCMTK_CORRUPT_PIXEL_DATA;
    }
    first = starts[frame];
    last = frame + 1 < frames ? starts[frame + 1] - 1 : fragments;
    return CDCMTK_OK;
}

// Frame `frame`'s codestream: its fragments, joined.
cdcmtk_status codestream(cdcmtk_object *object, unsigned long frame, unsigned long frames, std::vector<uint8_t> &out) {
    DcmElement *element = findTopLevel(object, 0x7FE0, 0x0010);
    if (element == nullptr || element->ident() != EVR_PixelData) return CDCMTK_NO_PIXEL_DATA;
    auto *pixelData = OFstatic_cast(DcmPixelData *, element);
    DcmPixelSequence *sequence = nullptr;
    E_TransferSyntax xfer = object->file.getDataset()->getOriginalXfer();
    if (pixelData->getEncapsulatedRepresentation(xfer, nullptr, sequence).bad() || sequence == nullptr)
        return CDCMTK_CORRUPT_PIXEL_DATA;
    unsigned long first = 0, last = 0;
    cdcmtk_status status = frameFragments(sequence, frame, frames, first, last);
    if (status != CDCMTK_OK) return status;
    for (unsigned long i = first; i <= last; i++) {
        DcmPixelItem *item = nullptr;
        Uint8 *bytes = nullptr;
        if (sequence->getItem(item, i).bad() || item == nullptr) return CDCMTK_CORRUPT_PIXEL_DATA;
        if (item->getLength() == 0) continue;
        if (item->getUint8Array(bytes).bad() || bytes == nullptr) return CDCMTK_CORRUPT_PIXEL_DATA;
        out.insert(out.end(), bytes, bytes + item->getLength());
    }
    return out.empty() ? CDCMTK_NO_PIXEL_DATA : CDCMTK_OK;
}

// Decodes one greyscale codestream into `out` (rows x columns words of bitsAllocated bits, native order).
// Its size, component count and precision are checked against the DICOM attributes before OpenJPEG
// allocates the image.
cdcmtk_status decodeCodestream(const std::vector<uint8_t> &bytes, unsigned rows, unsigned columns, unsigned bitsAllocated,
                               uint8_t *out) {
    // A JP2 file (signature box) or a bare codestream (SOC marker); DICOM asks for the latter, some writers send the former.
    static const uint8_t jp2Signature[] = {0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20};
    bool jp2 = bytes.size() >= 8 && std::memcmp(bytes.data(), jp2Signature, 8) == 0;
    if (!jp2 && (bytes.size() < 2 || bytes[0] != 0xFF || bytes[1] != 0x4F)) return CDCMTK_CORRUPT_PIXEL_DATA;

    MemoryStream memory{bytes.data(), bytes.size(), 0};
    std::unique_ptr<opj_stream_t, decltype(&opj_stream_destroy)> stream(opj_stream_create(1 << 16, OPJ_TRUE),
                                                                         opj_stream_destroy);
    std::unique_ptr<opj_codec_t, decltype(&opj_destroy_codec)> codec(
        opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K), opj_destroy_codec);
    if (!stream || !codec) return CDCMTK_OUT_OF_MEMORY;
    opj_stream_set_user_data(stream.get(), &memory, nullptr);
    opj_stream_set_user_data_length(stream.get(), bytes.size());
    opj_stream_set_read_function(stream.get(), streamRead);
    opj_stream_set_skip_function(stream.get(), streamSkip);
    opj_stream_set_seek_function(stream.get(), streamSeek);
    opj_set_error_handler(codec.get(), quiet, nullptr);
    opj_set_warning_handler(codec.get(), quiet, nullptr);
    opj_set_info_handler(codec.get(), quiet, nullptr);
    opj_dparameters_t parameters;
    opj_set_default_decoder_parameters(&parameters);
    if (!opj_setup_decoder(codec.get(), &parameters)) return CDCMTK_INTERNAL;

    opj_image_t *raw = nullptr;
    if (!opj_read_header(stream.get(), codec.get(), &raw) || raw == nullptr) return CDCMTK_CORRUPT_PIXEL_DATA;
    std::unique_ptr<opj_image_t, decltype(&opj_image_destroy)> image(raw, opj_image_destroy);
    if (image->numcomps != 1 || image->x1 <= image->x0 || image->y1 <= image->y0 ||
        image->x1 - image->x0 != columns || image->y1 - image->y0 != rows || image->comps[0].dx != 1 ||
        image->comps[0].dy != 1 || image->comps[0].prec < 1 || image->comps[0].prec > bitsAllocated)
        return CDCMTK_PIXEL_DATA_MISMATCH;
    if (!opj_decode(codec.get(), stream.get(), image.get()) || !opj_end_decompress(codec.get(), stream.get()))
        return CDCMTK_CORRUPT_PIXEL_DATA;
    const opj_image_comp_t &component = image->comps[0];
    if (component.data == nullptr || component.w != columns || component.h != rows) return CDCMTK_CORRUPT_PIXEL_DATA;

    // The stored values' bit pattern, as a native codec would leave it: the Swift side applies
    // BitsStored and PixelRepresentation, so a codestream whose signedness disagrees with the
    // header is read the header's way (as pydicom does).
    size_t count = size_t(rows) * columns;
    if (bitsAllocated == 16) {
        auto *words = reinterpret_cast<uint16_t *>(out);
        for (size_t i = 0; i < count; i++) words[i] = static_cast<uint16_t>(component.data[i]);
    } else {
        for (size_t i = 0; i < count; i++) out[i] = static_cast<uint8_t>(component.data[i]);
    }
    return CDCMTK_OK;
}

// OpenJPEG's HT block decoder (2.5.0, and upstream still) checks its input with assert(), which
// aborts the process on a crafted codestream (found by FuzzDICOM). A JPEG 2000 frame is therefore decoded
// in a forked child that writes the pixels and its status into shared memory; a child that dies is a
// corrupt codestream, not a dead server. The child calls only OpenJPEG and malloc (glibc keeps malloc
// usable after fork) and leaves with _exit.
cdcmtk_status decodeIsolated(const std::vector<uint8_t> &bytes, unsigned rows, unsigned columns, unsigned bitsAllocated,
                             uint8_t *out, size_t frameBytes) {
    const size_t size = sizeof(cdcmtk_status) + frameBytes;
    void *shared = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) return CDCMTK_OUT_OF_MEMORY;
    auto *status = static_cast<cdcmtk_status *>(shared);
    *status = CDCMTK_INTERNAL;
    pid_t child = fork();
    if (child == 0) {
        // Die quietly: no Swift crash report and no assert text in the server's log for a bad codestream.
        for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE}) signal(sig, SIG_DFL);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, STDERR_FILENO);
        *status = decodeCodestream(bytes, rows, columns, bitsAllocated, static_cast<uint8_t *>(shared) + sizeof(cdcmtk_status));
        _exit(0);
    }
    cdcmtk_status result = CDCMTK_INTERNAL;
    if (child > 0) {
        int how = 0;
        while (waitpid(child, &how, 0) < 0 && errno == EINTR) {}
        result = WIFEXITED(how) && WEXITSTATUS(how) == 0 ? *status : CDCMTK_CORRUPT_PIXEL_DATA;
        if (result == CDCMTK_OK) std::memcpy(out, static_cast<uint8_t *>(shared) + sizeof(cdcmtk_status), frameBytes);
    }
    munmap(shared, size);
    return result;
}

// Decodes frame `frame` to 16- or 8-bit words in `object->decoded`.
cdcmtk_status decodeJPEG2000(cdcmtk_object *object, unsigned rows, unsigned columns, unsigned bitsAllocated,
                             unsigned long frame, unsigned long frames) {
    std::vector<uint8_t> bytes;
    cdcmtk_status status = codestream(object, frame, frames, bytes);
    if (status != CDCMTK_OK) return status;
    object->decoded.resize(size_t(rows) * columns * (bitsAllocated / 8));
    // Every JPEG 2000 syntax: OpenJPEG decodes an HT code-block wherever it finds one (a COD or COC style bit,
    // main or tile-part header), so a .90/.91 object can carry one too (FuzzDICOM found that as well).
    status = decodeIsolated(bytes, rows, columns, bitsAllocated, object->decoded.data(), object->decoded.size());
    if (status != CDCMTK_OK) object->decoded.clear();
    return status;
}

}  // namespace

namespace {

/// Where a header-only parse stopped: at the value of the top-level Pixel Data element, whose tag and
/// length DCMTK has just read (explicit VR: tag, VR, 2 reserved bytes, 4-byte length; implicit: tag,
/// length), or at the end of the data set. Records the element's length, or returns false when the bytes
/// before `position` are not such an element header (then the caller parses the whole object).
bool notePixelDataHeader(cdcmtk_object *object, const uint8_t *bytes, size_t length, size_t position) {
    DcmXfer xfer(object->file.getDataset()->getOriginalXfer());
    const bool big = xfer.getByteOrder() == EBO_BigEndian;
    const size_t header = xfer.isExplicitVR() ? 12 : 8;
    if (position == length) {
        // The end of the data set: no Pixel Data, unless a zero-length element ends it.
        if (position < header) return true;
    } else if (position < header) {
        return false;
    }
    const uint8_t *p = bytes + position - header;
    auto u16 = [big](const uint8_t *q) { return big ? readBE16(q) : readLE16(q); };
    const bool isPixelData = u16(p) == 0x7FE0 && u16(p + 2) == 0x0010;
    if (!isPixelData) return position == length;
    const uint8_t *l = bytes + position - 4;
    object->headerPixelData = true;
    object->headerPixelLength = big ? uint32_t(l[0]) << 24 | uint32_t(l[1]) << 16 | uint32_t(l[2]) << 8 | l[3]
                                    : uint32_t(l[3]) << 24 | uint32_t(l[2]) << 16 | uint32_t(l[1]) << 8 | l[0];
    return true;
}

cdcmtk_status readObject(const uint8_t *bytes, size_t length, bool headerOnly, cdcmtk_object **out) {
    *out = nullptr;
    if (bytes == nullptr || !looksLikeDICOM(bytes, length)) return CDCMTK_NOT_DICOM;
    try {
        initialiseOnce();
        auto *object = new cdcmtk_object();
        DcmInputBufferStream stream;
        stream.setBuffer(bytes, offile_off_t(length));
        stream.setEos();
        object->file.transferInit();
        // Load every value now: the caller's buffer is not retained, so nothing may be read lazily. A header
        // read stops at the top-level Pixel Data instead: values after it are not needed for a header.
        OFCondition status = headerOnly
            ? object->file.readUntilTag(stream, EXS_Unknown, EGL_noChange, OFstatic_cast(Uint32, -1), DCM_PixelData)
            : object->file.read(stream, EXS_Unknown, EGL_noChange, OFstatic_cast(Uint32, -1));
        object->file.transferEnd();
        // Only a read that succeeded is looked at: the elements of a failed one may declare lengths their bytes
        // do not have, and DCMTK takes seconds over such a value (found by FuzzDICOM).
        OFString declared;
        if (status.good()) object->file.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, declared);
        const bool highThroughput = isHighThroughputJPEG2000(declared.c_str());
        if (status.good() && headerOnly) {
            DcmXfer xfer(object->file.getDataset()->getOriginalXfer());
            // A deflated data set's stream positions are not offsets into `bytes`, so its header is the whole read.
            if (xfer.getStreamCompression() != ESC_none ||
                !notePixelDataHeader(object, bytes, length, size_t(stream.tell()))) {
                delete object;
                return readObject(bytes, length, false, out);
            }
            object->headerOnly = true;
            const uint32_t undefined = 0xFFFFFFFF;
            if (object->headerPixelData && object->headerPixelLength == undefined && !xfer.isEncapsulated() &&
                !highThroughput) {
                delete object;
                return CDCMTK_MALFORMED;
            }
            // As the whole read would: a native value that runs past the end is a truncated object.
            if (object->headerPixelData && object->headerPixelLength != undefined &&
                size_t(stream.tell()) + object->headerPixelLength > length) {
                delete object;
                return CDCMTK_TRUNCATED;
            }
        }
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
        if (!declared.empty() && DcmXfer(declared.c_str()).getXfer() == EXS_Unknown) {
            object->transferSyntax = declared.c_str();
            object->unknownSyntax = !highThroughput;
        }
        *out = object;
        return CDCMTK_OK;
    } catch (const std::bad_alloc &) {
        return CDCMTK_OUT_OF_MEMORY;
    } catch (...) {
        return CDCMTK_INTERNAL;
    }
}

}  // namespace

extern "C" cdcmtk_status cdcmtk_read(const uint8_t *bytes, size_t length, cdcmtk_object **out) {
    return readObject(bytes, length, false, out);
}

extern "C" cdcmtk_status cdcmtk_read_header(const uint8_t *bytes, size_t length, cdcmtk_object **out) {
    return readObject(bytes, length, true, out);
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
    if (object->unknownSyntax) return CDCMTK_UNSUPPORTED_TRANSFER_SYNTAX;
    if (object->headerOnly) return object->headerPixelData ? CDCMTK_OK : CDCMTK_NO_PIXEL_DATA;
    // Encapsulated pixel data has an undefined length, so presence is all we can ask here.
    return findTopLevel(object, 0x7FE0, 0x0010) != nullptr ? CDCMTK_OK : CDCMTK_NO_PIXEL_DATA;
}

extern "C" cdcmtk_status cdcmtk_pixel_info(const cdcmtk_object *object, int *encapsulated, size_t *native_length,
                                           int *decodable) {
    *encapsulated = 0;
    *native_length = 0;
    *decodable = 0;
    try {
        DcmElement *pixels = object->headerOnly ? nullptr : findTopLevel(object, 0x7FE0, 0x0010);
        if (object->headerOnly ? !object->headerPixelData : pixels == nullptr) return CDCMTK_NO_PIXEL_DATA;
        const size_t valueLength = object->headerOnly ? object->headerPixelLength : pixels->getLength();
        E_TransferSyntax original = const_cast<cdcmtk_object *>(object)->file.getDataset()->getOriginalXfer();
        DcmXfer xfer(original);
        // Encapsulated pixel data reports no length here (its fragments are items), so only a native value can be empty.
        const bool fragments = xfer.isEncapsulated() || isHighThroughputJPEG2000(object->transferSyntax);
        if (!fragments && valueLength == 0) return CDCMTK_NO_PIXEL_DATA;
        if (fragments) {
            *encapsulated = 1;
            *decodable = isJPEG2000(object->transferSyntax) ||
                                 DcmCodecList::canChangeCoding(original, EXS_LittleEndianExplicit)
                             ? 1
                             : 0;
        } else {
            *native_length = valueLength;
            *decodable = 1;
        }
        return CDCMTK_OK;
    } catch (...) {
        return CDCMTK_INTERNAL;
    }
}

extern "C" cdcmtk_status cdcmtk_pixel_data(cdcmtk_object *object, unsigned rows, unsigned columns,
                                           unsigned bits_allocated, unsigned long frame, unsigned long frames,
                                           const uint8_t **data, size_t *length) {
    *data = nullptr;
    *length = 0;
    if (object->headerOnly) return CDCMTK_INTERNAL;  // its pixel data was never read
    if (frame >= frames) return CDCMTK_BAD_VALUE;
    size_t frameBytes = size_t(rows) * columns * (bits_allocated / 8);
    try {
        if (isJPEG2000(object->transferSyntax)) {
            if (object->decoded.empty() || object->decodedFrame != frame) {
                object->decoded.clear();
                cdcmtk_status status = decodeJPEG2000(object, rows, columns, bits_allocated, frame, frames);
                if (status != CDCMTK_OK) return status;
                object->decodedFrame = frame;
            }
            *data = object->decoded.data();
            *length = object->decoded.size();
            return CDCMTK_OK;
        }
        DcmDataset *dataset = object->file.getDataset();
        DcmElement *pixels = findTopLevel(object, 0x7FE0, 0x0010);
        if (pixels == nullptr) return CDCMTK_NO_PIXEL_DATA;
        if (frames > 1 && DcmXfer(dataset->getOriginalXfer()).isEncapsulated()) {
            // One frame at a time through the codec: decompressing every frame of a long series to read a few
            // of them would cost the whole series' time and memory per batch.
            if (object->decoded.empty() || object->decodedFrame != frame) {
                object->decoded.assign(frameBytes, 0);
                auto *pixelData = OFstatic_cast(DcmPixelData *, pixels);
                Uint32 startFragment = 0;
                OFString colourModel;
                OFCondition status = pixelData->getUncompressedFrame(dataset, Uint32(frame), startFragment,
                                                                     object->decoded.data(), Uint32(frameBytes), colourModel);
                if (status.bad()) {
                    object->decoded.clear();
                    return status == EC_CannotChangeRepresentation ? CDCMTK_UNSUPPORTED_TRANSFER_SYNTAX
                                                                   : CDCMTK_CORRUPT_PIXEL_DATA;
                }
                object->decodedFrame = frame;
            }
            *data = object->decoded.data();
            *length = object->decoded.size();
            return CDCMTK_OK;
        }
        if (!object->decompressed) {
            // Decompression happens here; a syntax without a registered codec fails with "cannot change representation".
            if (dataset->chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad())
                return CDCMTK_UNSUPPORTED_TRANSFER_SYNTAX;
            object->decompressed = true;
            pixels = findTopLevel(object, 0x7FE0, 0x0010);
        }
        if (pixels == nullptr || pixels->getLength() == 0) return CDCMTK_NO_PIXEL_DATA;
        const uint8_t *base = nullptr;
        if (bits_allocated == 16) {
            Uint16 *words = nullptr;
            if (pixels->getUint16Array(words).bad() || words == nullptr) return CDCMTK_BAD_VALUE;
            base = reinterpret_cast<const uint8_t *>(words);
        } else {
            Uint8 *bytes = nullptr;
            if (pixels->getUint8Array(bytes).bad() || bytes == nullptr) return CDCMTK_BAD_VALUE;
            base = bytes;
        }
        size_t total = pixels->getLength();
        size_t offset = frameBytes * frame;
        if (offset >= total) return CDCMTK_BAD_VALUE;
        *data = base + offset;
        *length = total - offset;
        return CDCMTK_OK;
    } catch (const std::bad_alloc &) {
        return CDCMTK_OUT_OF_MEMORY;
    } catch (...) {
        return CDCMTK_INTERNAL;
    }
}

extern "C" cdcmtk_status cdcmtk_frame_string(const cdcmtk_object *object, unsigned long frame, uint16_t macro_group,
                                             uint16_t macro_element, uint16_t group, uint16_t element, char *buffer,
                                             size_t capacity, size_t *length) {
    *length = 0;
    try {
        DcmDataset *dataset = const_cast<cdcmtk_object *>(object)->file.getDataset();
        // The per-frame item overrides the shared one (PS3.3 C.7.6.16: a macro is in one or the other).
        const DcmTagKey groups[] = {DcmTagKey(0x5200, 0x9230), DcmTagKey(0x5200, 0x9229)};
        for (int g = 0; g < 2; g++) {
            DcmItem *groupItem = nullptr;
            if (dataset->findAndGetSequenceItem(groups[g], groupItem, g == 0 ? int(frame) : 0).bad() || groupItem == nullptr)
                continue;
            DcmItem *macroItem = nullptr;
            if (groupItem->findAndGetSequenceItem(DcmTagKey(macro_group, macro_element), macroItem, 0).bad() ||
                macroItem == nullptr)
                continue;
            DcmElement *found = nullptr;
            if (macroItem->findAndGetElement(DcmTagKey(group, element), found, OFFalse).bad() || found == nullptr ||
                found->getLength() == 0)
                continue;
            OFString value;
            if (found->getOFStringArray(value).bad()) return CDCMTK_BAD_VALUE;
            *length = value.length();
            if (value.length() + 1 > capacity) return CDCMTK_BAD_VALUE;
            std::memcpy(buffer, value.c_str(), value.length() + 1);
            return CDCMTK_OK;
        }
        return CDCMTK_ABSENT;
    } catch (const std::bad_alloc &) {
        return CDCMTK_OUT_OF_MEMORY;
    } catch (...) {
        return CDCMTK_INTERNAL;
    }
}
