// The C-ECHO / C-STORE provider behind CDCMTKNetwork.h, on dcmnet's ASC_ and
// DIMSE_ calls (as DCMTK's own storescp uses them), one thread per association.
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/diutil.h"
#include "dcmtk/oflog/oflog.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "CDCMTK.h"
#include "part10.hpp"

struct cdcmtk_listener {
    T_ASC_Network *network = nullptr;
};

struct cdcmtk_association {
    T_ASC_Association *assoc = nullptr;
    std::string calling, called, host;
    std::atomic<bool> stop{false};
};

namespace {

void quietOnce() {
    static std::once_flag once;
    std::call_once(once, [] {
        OFLog::configure(OFLogger::OFF_LOG_LEVEL);
        // The peer's numeric address, for the allow-list; a reverse DNS lookup would also stall each accept.
        dcmDisableGethostbyaddr.set(OFTrue);
        // Debian's DCMTK leaves Nagle on unless TCP_NODELAY is set: each small response PDU then
        // waits for the peer's delayed ACK (about 40 ms a store on loopback, measured).
        setenv("TCP_NODELAY", "1", 0);
    });
}

void describe(char *error, size_t length, const char *what, const OFCondition &condition) {
    if (error && length) std::snprintf(error, length, "%s: %s", what, condition.text());
}

// What we decode, in the order we prefer it: uncompressed and lossless first, so a
// peer that offers both never has us accept a lossy copy.
const char *const preferredSyntaxes[] = {
    UID_LittleEndianExplicitTransferSyntax,
    UID_LittleEndianImplicitTransferSyntax,
    UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_JPEGProcess14SV1TransferSyntax,
    UID_JPEGProcess14TransferSyntax,
    UID_JPEGLSLosslessTransferSyntax,
    UID_RLELosslessTransferSyntax,
    UID_JPEG2000LosslessOnlyTransferSyntax,
    UID_JPEGProcess1TransferSyntax,
    UID_JPEGProcess2_4TransferSyntax,
    UID_JPEGLSLossyTransferSyntax,
    UID_JPEG2000TransferSyntax,
};

}  // namespace

extern "C" {

cdcmtk_listener *cdcmtk_listener_open(int port, int timeout_seconds, char *error, size_t error_length) {
    quietOnce();
    auto *listener = new (std::nothrow) cdcmtk_listener();
    if (!listener) return nullptr;
    OFCondition status = ASC_initializeNetwork(NET_ACCEPTOR, port, timeout_seconds, &listener->network);
    if (status.bad()) {
        describe(error, error_length, "listening for DICOM associations", status);
        delete listener;
        return nullptr;
    }
    return listener;
}

void cdcmtk_listener_close(cdcmtk_listener *listener) {
    if (!listener) return;
    ASC_dropNetwork(&listener->network);
    delete listener;
}

int cdcmtk_listener_accept(cdcmtk_listener *listener, int wait_seconds, long max_pdu,
                           cdcmtk_association **out, char *error, size_t error_length) {
    if (!ASC_associationWaiting(listener->network, wait_seconds)) return 0;
    T_ASC_Association *assoc = nullptr;
    OFCondition status = ASC_receiveAssociation(listener->network, &assoc, max_pdu);
    if (status.bad()) {
        describe(error, error_length, "reading an association request", status);
        if (assoc) {
            ASC_dropAssociation(assoc);
            ASC_destroyAssociation(&assoc);
        }
        return status == DUL_NOASSOCIATIONREQUEST ? 0 : -1;
    }
    auto *association = new (std::nothrow) cdcmtk_association();
    if (!association) {
        ASC_abortAssociation(assoc);
        ASC_dropAssociation(assoc);
        ASC_destroyAssociation(&assoc);
        return -1;
    }
    association->assoc = assoc;
    DIC_AE calling, called;
    ASC_getAPTitles(assoc->params, calling, sizeof calling, called, sizeof called, nullptr, 0);
    association->calling = calling;
    association->called = called;
    DIC_NODENAME peer;
    ASC_getPresentationAddresses(assoc->params, peer, sizeof peer, nullptr, 0);
    association->host = peer;
    *out = association;
    return 1;
}

const char *cdcmtk_association_calling_ae(const cdcmtk_association *association) { return association->calling.c_str(); }
const char *cdcmtk_association_called_ae(const cdcmtk_association *association) { return association->called.c_str(); }
const char *cdcmtk_association_peer_host(const cdcmtk_association *association) { return association->host.c_str(); }

void cdcmtk_association_reject(cdcmtk_association *association, cdcmtk_reject_reason reason) {
    T_ASC_RejectParameters parameters;
    switch (reason) {
    case CDCMTK_REJECT_CALLING_AE:
        parameters = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED};
        break;
    case CDCMTK_REJECT_CALLED_AE:
        parameters = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED};
        break;
    default:
        parameters = {ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                      ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
    }
    ASC_rejectAssociation(association->assoc, &parameters);
    ASC_dropAssociation(association->assoc);
}

int cdcmtk_association_accept(cdcmtk_association *association, char *error, size_t error_length) {
    T_ASC_Parameters *params = association->assoc->params;
    int count = ASC_countPresentationContexts(params);
    for (int i = 0; i < count; i++) {
        T_ASC_PresentationContext context;
        if (ASC_getPresentationContext(params, i, &context).bad()) continue;
        bool wanted = std::strcmp(context.abstractSyntax, UID_VerificationSOPClass) == 0
                      || dcmIsaStorageSOPClassUID(context.abstractSyntax, ESSC_All);
        if (!wanted) {
            ASC_refusePresentationContext(params, context.presentationContextID, ASC_P_ABSTRACTSYNTAXNOTSUPPORTED);
            continue;
        }
        bool chosen = false;
        for (const char *syntax : preferredSyntaxes) {
            bool proposed = false;
            for (int t = 0; t < context.transferSyntaxCount; t++) {
                if (std::strcmp(context.proposedTransferSyntaxes[t], syntax) == 0) proposed = true;
            }
            if (proposed) {
                ASC_acceptPresentationContext(params, context.presentationContextID, syntax);
                chosen = true;
                break;
            }
        }
        if (!chosen) ASC_refusePresentationContext(params, context.presentationContextID, ASC_P_TRANSFERSYNTAXESNOTSUPPORTED);
    }
    OFCondition status = ASC_acknowledgeAssociation(association->assoc);
    if (status.bad()) {
        describe(error, error_length, "acknowledging the association", status);
        return -1;
    }
    return ASC_countAcceptedPresentationContexts(params);
}

cdcmtk_association_end cdcmtk_association_serve(cdcmtk_association *association, int timeout_seconds,
                                                cdcmtk_store_handler store, cdcmtk_command_observer observe, void *context) {
    T_ASC_Association *assoc = association->assoc;
    int idle = 0;
    while (true) {
        if (association->stop.load()) {
            ASC_abortAssociation(assoc);
            return CDCMTK_ENDED_STOPPED;
        }
        T_ASC_PresentationContextID presentation = 0;
        T_DIMSE_Message message;
        // One-second polls, so a stop is seen soon and the DIMSE timeout is counted here.
        OFCondition status = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING, 1, &presentation, &message, nullptr);
        if (status == DIMSE_NODATAAVAILABLE) {
            if (++idle >= timeout_seconds) {
                ASC_abortAssociation(assoc);
                return CDCMTK_ENDED_TIMEOUT;
            }
            continue;
        }
        idle = 0;
        if (status == DUL_PEERREQUESTEDRELEASE) {
            ASC_acknowledgeRelease(assoc);
            return CDCMTK_ENDED_RELEASE;
        }
        if (status == DUL_PEERABORTEDASSOCIATION) return CDCMTK_ENDED_ABORT;
        if (status.bad()) {
            ASC_abortAssociation(assoc);
            return CDCMTK_ENDED_ERROR;
        }
        switch (message.CommandField) {
        case DIMSE_C_ECHO_RQ:
            DIMSE_sendEchoResponse(assoc, presentation, &message.msg.CEchoRQ, STATUS_Success, nullptr);
            observe(context, 0x0030, STATUS_Success);
            break;
        case DIMSE_C_STORE_RQ: {
            T_DIMSE_C_StoreRQ &request = message.msg.CStoreRQ;
            DcmDataset *dataset = nullptr;
            T_ASC_PresentationContextID dataPresentation = 0;
            status = DIMSE_receiveDataSetInMemory(assoc, DIMSE_NONBLOCKING, timeout_seconds, &dataPresentation, &dataset,
                                                  nullptr, nullptr);
            if (status.bad()) {
                delete dataset;
                ASC_abortAssociation(assoc);
                return status == DIMSE_NODATAAVAILABLE ? CDCMTK_ENDED_TIMEOUT : CDCMTK_ENDED_ERROR;
            }
            T_ASC_PresentationContext accepted;
            uint16_t answer = 0xC000;  // Cannot Understand
            std::vector<uint8_t> bytes;
            if (ASC_findAcceptedPresentationContext(assoc->params, dataPresentation, &accepted).good()) {
                E_TransferSyntax xfer = DcmXfer(accepted.acceptedTransferSyntax).getXfer();
                if (cdcmtk::part10(dataset, xfer, bytes)) answer = store(context, bytes.data(), bytes.size());
                dataset = nullptr;  // owned and freed by the file built from it
            }
            delete dataset;
            T_DIMSE_C_StoreRSP response;
            std::memset(&response, 0, sizeof response);
            response.MessageIDBeingRespondedTo = request.MessageID;
            response.DimseStatus = answer;
            response.DataSetType = DIMSE_DATASET_NULL;
            OFStandard::strlcpy(response.AffectedSOPClassUID, request.AffectedSOPClassUID, sizeof response.AffectedSOPClassUID);
            OFStandard::strlcpy(response.AffectedSOPInstanceUID, request.AffectedSOPInstanceUID,
                                sizeof response.AffectedSOPInstanceUID);
            response.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
            status = DIMSE_sendStoreResponse(assoc, presentation, &request, &response, nullptr);
            observe(context, 0x0001, answer);
            if (status.bad()) {
                ASC_abortAssociation(assoc);
                return CDCMTK_ENDED_ERROR;
            }
            break;
        }
        default:
            // Only ECHO and STORE are offered; anything else breaks the negotiation's contract.
            observe(context, message.CommandField, 0x0211);
            ASC_abortAssociation(assoc);
            return CDCMTK_ENDED_ERROR;
        }
    }
}

void cdcmtk_association_stop(cdcmtk_association *association) { association->stop.store(true); }

void cdcmtk_association_free(cdcmtk_association *association) {
    if (!association) return;
    if (association->assoc) {
        ASC_dropSCPAssociation(association->assoc);
        ASC_destroyAssociation(&association->assoc);
    }
    delete association;
}

int cdcmtk_store_scu(const char *host, int port, const char *calling_ae, const char *called_ae, const uint8_t *bytes,
                     size_t length, int timeout_seconds, uint16_t *status, char *error, size_t error_length) {
    quietOnce();
    *status = 0;
    DcmFileFormat file;
    DcmInputBufferStream in;
    in.setBuffer(bytes, offile_off_t(length));
    in.setEos();
    file.transferInit();
    OFCondition read = file.read(in);
    file.transferEnd();
    if (read.bad()) {
        describe(error, error_length, "the object to send cannot be read", read);
        return -1;
    }
    DcmDataset *dataset = file.getDataset();
    OFString sopClass, sopInstance;
    dataset->findAndGetOFString(DCM_SOPClassUID, sopClass);
    dataset->findAndGetOFString(DCM_SOPInstanceUID, sopInstance);
    const char *own = DcmXfer(dataset->getOriginalXfer()).getXferID();
    std::vector<const char *> syntaxes{own};
    for (const char *plain : {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax})
        if (std::strcmp(plain, own) != 0) syntaxes.push_back(plain);

    T_ASC_Network *network = nullptr;
    T_ASC_Parameters *parameters = nullptr;
    T_ASC_Association *assoc = nullptr;
    int result = -1;
    OFCondition step = ASC_initializeNetwork(NET_REQUESTOR, 0, timeout_seconds, &network);
    if (step.good()) step = ASC_createAssociationParameters(&parameters, ASC_DEFAULTMAXPDU);
    if (step.good()) step = ASC_setAPTitles(parameters, calling_ae, called_ae, nullptr);
    const std::string peer = std::string(host) + ":" + std::to_string(port);
    if (step.good()) step = ASC_setPresentationAddresses(parameters, "localhost", peer.c_str());
    if (step.good())
        step = ASC_addPresentationContext(parameters, 1, sopClass.c_str(), syntaxes.data(), int(syntaxes.size()));
    if (step.good()) {
        // The association request and every DIMSE message wait at most the timeout.
        dcmConnectionTimeout.set(timeout_seconds);
        step = ASC_requestAssociation(network, parameters, &assoc);
    }
    if (step.bad()) {
        describe(error, error_length, "association", step);
        if (parameters && !assoc) ASC_destroyAssociationParameters(&parameters);
    } else if (ASC_findAcceptedPresentationContextID(assoc, sopClass.c_str()) == 0) {
        if (error && error_length) std::snprintf(error, error_length, "the peer accepted no presentation context for the object");
        ASC_abortAssociation(assoc);
    } else {
        T_DIMSE_C_StoreRQ request{};
        request.MessageID = assoc->nextMsgID++;
        OFStandard::strlcpy(request.AffectedSOPClassUID, sopClass.c_str(), sizeof request.AffectedSOPClassUID);
        OFStandard::strlcpy(request.AffectedSOPInstanceUID, sopInstance.c_str(), sizeof request.AffectedSOPInstanceUID);
        request.DataSetType = DIMSE_DATASET_PRESENT;
        request.Priority = DIMSE_PRIORITY_MEDIUM;
        T_DIMSE_C_StoreRSP response{};
        DcmDataset *detail = nullptr;
        step = DIMSE_storeUser(assoc, ASC_findAcceptedPresentationContextID(assoc, sopClass.c_str()), &request, nullptr,
                               dataset, nullptr, nullptr, DIMSE_NONBLOCKING, timeout_seconds, &response, &detail);
        delete detail;
        if (step.good()) {
            *status = response.DimseStatus;
            result = 0;
            ASC_releaseAssociation(assoc);
        } else {
            describe(error, error_length, "C-STORE", step);
            ASC_abortAssociation(assoc);
        }
    }
    if (assoc) ASC_destroyAssociation(&assoc);
    if (network) ASC_dropNetwork(&network);
    return result;
}

}  // extern "C"
