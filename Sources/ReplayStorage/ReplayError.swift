/// An error of the replay tables; its message names the bad value and what was expected.
///
/// Every operation that throws one leaves the table it was called on unchanged, except
/// `sample`, which never throws after it has taken a sample.
public struct ReplayError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What went wrong, for callers (and the gRPC service) that map errors to status codes.
    public enum Kind: String, Sendable, Equatable {
        /// A bad argument or config value (size, priority, count, rate limiter range).
        case invalidArgument
        /// A table or checkpoint that does not exist.
        case notFound
        /// An item key that is already in the table.
        case alreadyExists
        /// Data that does not match the table's signature.
        case signatureMismatch
        /// A blocking insert or sample whose deadline passed before the rate limiter allowed it.
        case timeout
        /// A blocking call woken because the table was closed.
        case cancelled
        /// A checkpoint that cannot be written or read.
        case checkpoint
        /// A checkpoint whose table config differs from the server's.
        case configConflict
    }

    /// The category of the error.
    public var kind: Kind
    /// The full message, naming the bad value and what was expected.
    public var message: String
    public var description: String { message }

    /// An error of `kind` with `message`.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
}
