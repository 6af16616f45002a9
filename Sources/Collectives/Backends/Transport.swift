/// Non-blocking point-to-point messaging that our algorithms are written against.
///
/// A transport is bound to one op (its context gives the channel that keeps the op's
/// messages apart and the deadline). Messages between a pair match by `tag` in post
/// order, as in MPI. Requests must all be waited before the op returns.
protocol Transport {
    associatedtype Request
    /// This rank.
    var rank: Int { get }
    /// The number of ranks.
    var size: Int { get }
    /// The group's reusable scratch buffers.
    var pool: ScratchPool { get }
    /// Starts sending `bytes` bytes at `pointer` to `peer`; the memory must stay intact
    /// until the request is waited.
    func isend(_ pointer: UnsafeRawPointer?, bytes: Int, to peer: Int, tag: Int) throws -> Request
    /// Starts receiving exactly `bytes` bytes from `peer` into `pointer`.
    func irecv(_ pointer: UnsafeMutableRawPointer?, bytes: Int, from peer: Int, tag: Int) throws -> Request
    /// Waits for a request (throws `CollectiveError.timeout` at the op's deadline).
    func wait(_ request: Request) throws
}

extension Transport {
    /// Waits for every request in order.
    func waitAll(_ requests: [Request]) throws {
        for r in requests { try wait(r) }
    }

    /// Sends and receives at once (no deadlock between two peers exchanging).
    func sendRecv(_ send: UnsafeRawPointer?, sendBytes: Int, to dst: Int,
                  _ recv: UnsafeMutableRawPointer?, recvBytes: Int, from src: Int, tag: Int) throws {
        let r = try irecv(recv, bytes: recvBytes, from: src, tag: tag)
        let s = try isend(send, bytes: sendBytes, to: dst, tag: tag)
        try wait(r)
        try wait(s)
    }
}
