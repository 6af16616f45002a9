import GRPCCore
import ReplayStorage

extension ReplayError.Kind {
    /// The gRPC status code this kind of error is reported with.
    public var statusCode: RPCError.Code {
        switch self {
        case .invalidArgument, .signatureMismatch: return .invalidArgument
        case .notFound: return .notFound
        case .alreadyExists: return .alreadyExists
        case .timeout: return .deadlineExceeded
        case .cancelled: return .cancelled
        case .configConflict: return .failedPrecondition
        case .checkpoint: return .internalError
        }
    }
}

extension RPCError {
    /// The status for `error`: its kind's code and its message (prefixed with the kind, so
    /// a client can tell `signatureMismatch` from `invalidArgument`).
    public init(_ error: ReplayError) {
        self.init(code: error.kind.statusCode, message: "\(error.kind.rawValue): \(error.message)")
    }
}
