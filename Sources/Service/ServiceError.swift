import Glibc
import Storage

/// Why the service could not start or could not keep an upload.
public enum ServiceError: Error, Sendable, Equatable {
    case directory(String)
    case file(String)
    case spool(String, Int32)
    case model(type: String, detail: String)
    case configuration(String)

    public var detail: String {
        switch self {
        case .directory(let path): "Cannot create or open the directory \(path)."
        case .file(let path): "Cannot create or open the file \(path)."
        case .spool(let call, let code): "Spool \(call) failed: \(String(cString: strerror(code)))."
        case .model(_, let detail): "The model cannot be loaded: \(detail)"
        case .configuration(let reason): "Invalid setting: \(reason)."
        }
    }
}

extension ServiceError: CustomStringConvertible {
    public var description: String { detail }
}

/// What a log line may say about an error: the messages of our typed errors
/// name paths, calls and SQL statements, never request data; other errors
/// only by their type.
func loggable(_ error: any Error) -> String {
    switch error {
    case let error as StorageError: error.detail
    case let error as ServiceError: error.detail
    default: "\(type(of: error))"
    }
}
