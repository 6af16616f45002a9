import GRPCCore

/// Refuses every RPC whose `authorization` metadata is not `Bearer <token>` with
/// `unauthenticated`, before the handler runs.
public struct BearerTokenInterceptor: ServerInterceptor {
    private let expected: [UInt8]

    /// An interceptor accepting exactly `token`.
    public init(token: String) { expected = Array("Bearer \(token)".utf8) }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        var ok = false
        for value in request.metadata[stringValues: "authorization"] where Self.equal(Array(value.utf8), expected) {
            ok = true
        }
        guard ok else {
            throw RPCError(code: .unauthenticated,
                           message: "\(context.descriptor): missing or wrong bearer token; expected metadata 'authorization: Bearer <token>'")
        }
        return try await next(request, context)
    }

    /// Compares in time independent of where the first difference is.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
