// Writing a data set as Part-10 bytes in memory, shared by the DICOM node (a received
// instance) and the report builder (an SR). Internal to the shim.
#ifndef CDCMTK_PART10_HPP
#define CDCMTK_PART10_HPP

#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcostrmb.h"

#include <cstdint>
#include <vector>

namespace cdcmtk {

/// The dataset as a Part-10 file in `xfer`, meta header built from its UIDs.
inline bool part10(DcmDataset *dataset, E_TransferSyntax xfer, std::vector<uint8_t> &bytes) {
    DcmFileFormat file(dataset, OFFalse);  // takes the dataset over
    if (file.validateMetaInfo(xfer).bad()) return false;
    std::vector<char> chunk(1 << 20);
    DcmOutputBufferStream out(chunk.data(), chunk.size());
    file.transferInit();
    OFCondition status = EC_StreamNotifyClient;
    while (status == EC_StreamNotifyClient) {
        status = file.write(out, xfer, EET_ExplicitLength, nullptr);
        void *data = nullptr;
        offile_off_t count = 0;
        out.flushBuffer(data, count);
        bytes.insert(bytes.end(), static_cast<uint8_t *>(data), static_cast<uint8_t *>(data) + count);
    }
    file.transferEnd();
    out.flush();
    void *data = nullptr;
    offile_off_t count = 0;
    out.flushBuffer(data, count);
    bytes.insert(bytes.end(), static_cast<uint8_t *>(data), static_cast<uint8_t *>(data) + count);
    return status.good();
}

}  // namespace cdcmtk

#endif
