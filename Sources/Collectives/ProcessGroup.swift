import Foundation
import TensorCore

// MARK: - ProcessGroup

/// A fixed set of ranks that run collective operations together: the seam between
/// data-parallel code (DDP, ZeRO, SyncBatchNorm) and a communication backend.
///
/// Backends with this one API: `MPIProcessGroup` (one OpenMPI process per rank, the real
/// engine) and `InProcessGroup` (N ranks as threads of one process, for tests;
/// `InProcessWorld.run(size:)` runs a closure on every rank and collects the results).
///
/// Every operation exists as an `...Async` requirement that returns a `CollectiveWork`;
/// the blocking forms (`allReduce`, `broadcast`, ...) are `async(...).wait()`.
///
/// ## Concurrency contract
/// - **Issue order.** Operations of one group run one at a time, in the order they were
///   issued, on the group's communication thread, and complete in issue order: when
///   `wait()` of op *k* returns, ops 0..<k have completed too (successfully or not).
///   A blocking call is queued behind all earlier async ops of the group; if the queue
///   is idle, the waiting thread runs the op itself (same order, lower latency; MPI only
///   when it granted MPI_THREAD_SERIALIZED or better).
/// - **Same order on every rank.** Collectives (allReduce, reduceScatter, allGather,
///   broadcast, barrier) must be issued in the same order with matching sizes, dtype,
///   op and options on every rank of the group, as in MPI. Issue them from one thread
///   per rank (or serialise issuing yourself); issuing itself is thread-safe, but two
///   threads racing to issue collectives make the order differ between ranks.
/// - **Buffers.** A `CollectiveBuffer` is borrowed memory: the caller keeps it valid and
///   does not read or write it from issue until `wait()` returns (or `isCompleted`).
///   Send and receive buffers of one op must not overlap unless documented (allReduce
///   is in place by design).
/// - **Point-to-point.** `send`/`recv` match by (peer, tag) in FIFO order per
///   (source, tag); user tags are `0...32767` and never collide with the group's
///   internal traffic (collectives use a separate channel). A send is buffered
///   (in-process: eagerly copied; MPI: a large send waits for the matching recv), and
///   p2p ops also run in issue order on the communication thread, so two ranks that
///   both send a large message to each other first deadlock (then time out): use
///   `sendRecv` for exchanges.
/// - **Failure.** Every op waits at most `timeout` seconds for its peers; a missing or
///   dead peer becomes `CollectiveError.timeout` naming this rank, the peer when known,
///   the op, its sequence number and the user `step`, never a hang. After a failed
///   op the group is poisoned: later ops fail fast with `CollectiveError.poisoned`.
///   (Under mpirun, a rank that exits makes mpirun stop the whole job; a rank that is
///   alive but never joins is what the timeout catches. `MPIProcessGroup.abort()` ends
///   every rank at once after a fatal error.)
/// - `rank`, `size`, `timeout` are immutable; `step` is a label for error messages
///   (set it to the training step); reading and writing it is thread-safe.
public protocol ProcessGroup: AnyObject, Sendable {
    /// This process's (or thread's) rank, `0..<size`.
    var rank: Int { get }
    /// The number of ranks in the group.
    var size: Int { get }
    /// Seconds an op waits for peers before failing with `CollectiveError.timeout`.
    var timeout: Double { get }
    /// The caller's step label, copied into errors ("rank 2, step 17: ..."); -1 if unset.
    var step: Int { get set }
    /// A short backend name for logs and benchmark tables ("mpi", "inprocess").
    var backendName: String { get }

    /// Starts an in-place all-reduce: every rank's `buffer` becomes `op` over all ranks.
    ///
    /// Supported dtypes: float32, float64, int32, int64 (compression: float32 only).
    /// `options.algorithm` picks the backend's native allreduce or one of ours over
    /// send/recv; each documents its reduction order (see `AllReduceAlgorithm`).
    func allReduceAsync(_ buffer: CollectiveBuffer, op: ReduceOp, options: CollectiveOptions) -> CollectiveWork

    /// Starts a reduce-scatter with per-rank counts: `send` holds `counts.reduce(0, +)`
    /// elements laid out rank-major (rank j's block starts at `counts[..<j].sum`), and
    /// `recv` (`counts[rank]` elements) receives `op` over all ranks of this rank's block.
    /// Counts may differ between ranks (uneven shards) and may be zero.
    func reduceScatterAsync(send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], op: ReduceOp, options: CollectiveOptions) -> CollectiveWork

    /// Starts an all-gather with per-rank counts: `send` holds `counts[rank]` elements,
    /// `recv` receives all ranks' blocks rank-major (`counts.reduce(0, +)` elements).
    /// Any dtype (bytes are copied).
    func allGatherAsync(send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], options: CollectiveOptions) -> CollectiveWork

    /// Starts a broadcast: `root`'s buffer is copied into every rank's buffer. Any dtype.
    func broadcastAsync(_ buffer: CollectiveBuffer, root: Int) -> CollectiveWork

    /// Starts a point-to-point send of `buffer` to rank `peer` with a user `tag` (0...32767).
    func sendAsync(_ buffer: CollectiveBuffer, to peer: Int, tag: Int) -> CollectiveWork

    /// Starts a receive of exactly `buffer.count` elements from rank `peer` with `tag`;
    /// a message of another size is `CollectiveError.sizeMismatch`.
    func recvAsync(_ buffer: CollectiveBuffer, from peer: Int, tag: Int) -> CollectiveWork

    /// Starts a simultaneous send to `dst` and receive from `src` with one `tag` (the
    /// deadlock-free exchange for pipelines and halo swaps; `send` and `recv` must not
    /// overlap).
    func sendRecvAsync(send: CollectiveBuffer, to dst: Int, recv: CollectiveBuffer, from src: Int, tag: Int) -> CollectiveWork

    /// Starts a barrier: completes on every rank once all ranks have entered it.
    func barrierAsync() -> CollectiveWork
}

// MARK: - Plain values

/// The elementwise reduction of allReduce / reduceScatter.
///
/// `average` is `sum` followed by a division by the group size on every rank
/// (integer division for int32/int64).
public enum ReduceOp: String, Sendable, CaseIterable {
    case sum, product, max, min, average
}

/// Which allreduce implementation runs.
///
/// Reduction orders (floating point: the association of the sum; every algorithm
/// leaves bitwise-identical results on all ranks):
/// - `native`: the backend's own allreduce. In-process: `((x0 + x1) + x2) + ...` in rank
///   order. MPI: whatever `MPI_Allreduce` does (not specified by MPI).
/// - `ring`: reduce-scatter then all-gather around the ring `r -> r+1`, chunked and
///   pipelined. Element in segment `j` (the `j`-th of `size` near-equal segments) is
///   `((x_j + x_{j+1}) + x_{j+2}) + ... + x_{j-1}` (indices mod size).
/// - `halvingDoubling`: Rabenseifner's recursive vector halving (reduce-scatter) and
///   doubling (all-gather). For a non-power-of-two size, with `p'` the largest power
///   of two `<= size` and `rem = size - p'`, ranks `2i, 2i+1` (`i < rem`) first fold
///   into `v_i = x_{2i} + x_{2i+1}`; the others are `v_{r-rem} = x_r`. Then
///   for `m = p'/2, p'/4, ..., 1`: `v_a = v_a + v_{a+m}` for `a < m`; the result is `v_0`.
/// - `tree`: reduce up the binary tree rooted at rank 0 (children `2r+1`, `2r+2`), then
///   broadcast down: `t(r) = (x_r + t(2r+1)) + t(2r+2)`; the result is `t(0)`. Chunked.
public enum AllReduceAlgorithm: String, Sendable, CaseIterable {
    case native, ring, halvingDoubling = "halving-doubling", tree
}

/// The format on the wire for float32 allreduce; accumulation stays in float32.
public enum WireCompression: String, Sendable, CaseIterable {
    /// Full float32 (or the buffer's own dtype).
    case none
    /// IEEE half: 11-bit significand, max 65504 (larger partial sums become ±inf);
    /// below 6.1e-5 values are subnormal (absolute error up to 2^-25 per hop).
    /// Error bound of a p-rank ring: |result − exact| <= p·(2^-11·Σ|x_i| + 2^-25).
    case float16
    /// bfloat16: float32's range, 8-bit significand; bound p·2^-8·Σ|x_i|.
    case bfloat16
}

/// Options of a collective, as a plain value.
///
/// Compression is implemented by the `ring` algorithm only; any other algorithm with
/// compression fails with `CollectiveError.unsupported`.
public struct CollectiveOptions: Sendable, Equatable {
    /// The allreduce implementation (`reduceScatter`/`allGather`: `native` or `ring`).
    public var algorithm: AllReduceAlgorithm
    /// The wire format (float32 allreduce with `ring` only).
    public var compression: WireCompression
    /// Pipeline chunk size in bytes for `ring` and `tree` (a segment is sent in pieces
    /// of at most this size so that reduction overlaps transfer). Default 1 MiB: on two
    /// ranks sharing two cores, per-message overhead outweighs finer pipelining (256 KiB
    /// chunks were 0.90–0.93x MPI_Allreduce at 1–4 MiB, 1 MiB chunks 0.96–1.05x; 64 KiB
    /// chunks 0.68–0.73x; `loom allreduce-bench --chunk-bytes`, session 12).
    public var chunkBytes: Int

    /// Creates options; the defaults are the backend's native allreduce, no compression.
    public init(algorithm: AllReduceAlgorithm = .native, compression: WireCompression = .none, chunkBytes: Int = 1 << 20) {
        self.algorithm = algorithm
        self.compression = compression
        self.chunkBytes = chunkBytes
    }

    /// The backend's native collective, uncompressed.
    public static let native = CollectiveOptions()
    /// Our ring over send/recv.
    public static let ring = CollectiveOptions(algorithm: .ring)
}

/// Borrowed memory for one collective: `count` elements of `dtype` at `pointer`.
///
/// `@unchecked Sendable`: it is only an address handed to the group's communication
/// thread; the contract (see `ProcessGroup`) makes the caller keep the memory alive and
/// untouched until the op's `wait()` returns, so no two threads access it at once.
public struct CollectiveBuffer: @unchecked Sendable {
    /// The first element; may be nil when `count == 0`.
    public var pointer: UnsafeMutableRawPointer?
    /// Number of elements.
    public var count: Int
    /// Element type.
    public var dtype: DType

    /// Wraps raw memory holding `count` elements of `dtype`.
    public init(_ pointer: UnsafeMutableRawPointer?, count: Int, dtype: DType) {
        precondition(count >= 0, "CollectiveBuffer: count \(count) must be >= 0")
        precondition(count == 0 || pointer != nil, "CollectiveBuffer: nil pointer with count \(count)")
        self.pointer = pointer
        self.count = count
        self.dtype = dtype
    }

    /// Wraps a typed buffer (Float, Double, Int32, Int64, Float16, ...).
    public init<T: TensorElement>(_ buffer: UnsafeMutableBufferPointer<T>) {
        self.init(buffer.baseAddress.map { UnsafeMutableRawPointer($0) }, count: buffer.count, dtype: T.dtype)
    }

    /// Wraps a read-only typed buffer as the *send* side of reduceScatter/allGather/send.
    /// The group never writes through it.
    public init<T: TensorElement>(readOnly buffer: UnsafeBufferPointer<T>) {
        self.init(buffer.baseAddress.map { UnsafeMutableRawPointer(mutating: $0) }, count: buffer.count, dtype: T.dtype)
    }

    /// Size in bytes.
    public var byteCount: Int { count * dtype.byteSize }

    /// The sub-buffer of elements `range` (no copy).
    public func slice(_ range: Range<Int>) -> CollectiveBuffer {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "CollectiveBuffer.slice: \(range) out of 0..<\(count)")
        return CollectiveBuffer(range.isEmpty ? nil : pointer! + range.lowerBound * dtype.byteSize, count: range.count, dtype: dtype)
    }
}

// MARK: - Errors

/// A failed collective. Messages name the rank, the op, its sequence number in the
/// group, the caller's step, and the bad value against what was expected.
public enum CollectiveError: Error, CustomStringConvertible, Equatable {
    /// A peer did not arrive within `seconds` (dead, hung, or issued a different op).
    case timeout(rank: Int, peer: Int?, op: String, sequence: Int, step: Int, seconds: Double)
    /// Arguments are inconsistent (counts, sizes, root, tag, dtype).
    case invalidArgument(rank: Int, op: String, message: String)
    /// A received message had another size than the posted buffer.
    case sizeMismatch(rank: Int, peer: Int, op: String, step: Int, expectedBytes: Int, receivedBytes: Int)
    /// The combination is not implemented (e.g. compression with `tree`).
    case unsupported(rank: Int, op: String, message: String)
    /// The backend reported an error (MPI error string).
    case backend(rank: Int, op: String, step: Int, message: String)
    /// An earlier op of this group failed; the group cannot be used any more.
    case poisoned(rank: Int, op: String, firstError: String)

    public var description: String {
        func stepText(_ s: Int) -> String { s >= 0 ? ", step \(s)" : "" }
        switch self {
        case let .timeout(rank, peer, op, sequence, step, seconds):
            let who = peer.map { "rank \($0)" } ?? "a peer"
            return "rank \(rank)\(stepText(step)): \(op) (op #\(sequence)) timed out after \(seconds) s waiting for \(who)"
        case let .invalidArgument(rank, op, message):
            return "rank \(rank): \(op): \(message)"
        case let .sizeMismatch(rank, peer, op, step, expected, received):
            return "rank \(rank)\(stepText(step)): \(op): expected \(expected) bytes from rank \(peer), received \(received)"
        case let .unsupported(rank, op, message):
            return "rank \(rank): \(op): unsupported: \(message)"
        case let .backend(rank, op, step, message):
            return "rank \(rank)\(stepText(step)): \(op): \(message)"
        case let .poisoned(rank, op, first):
            return "rank \(rank): \(op): group unusable after an earlier failure: \(first)"
        }
    }
}

// MARK: - Work handle

/// The handle of an issued op; `wait()` blocks until it completes and rethrows its error.
///
/// `@unchecked Sendable`: all mutable state is guarded by `condition`'s lock.
public final class CollectiveWork: @unchecked Sendable {
    /// The op's name ("allReduce(ring)", "send", ...).
    public let op: String
    /// The op's position in its group's issue order.
    public let sequence: Int
    private let condition = NSCondition()
    /// The queue to help (set at submit; cleared by the first `wait()`); weak so a
    /// finished handle does not keep its group's queue alive.
    weak var queue: CommQueue?
    private var done = false
    private var error: (any Error)?

    /// Creates a pending handle (backends call this).
    public init(op: String, sequence: Int) {
        self.op = op
        self.sequence = sequence
    }

    /// A handle that has already failed (argument errors found at issue time).
    public static func failed(_ error: any Error, op: String, sequence: Int = -1) -> CollectiveWork {
        let w = CollectiveWork(op: op, sequence: sequence)
        w.complete(error)
        return w
    }

    /// Marks the op done (backends call this exactly once).
    public func complete(_ error: (any Error)? = nil) {
        condition.lock()
        self.error = error
        done = true
        condition.broadcast()
        condition.unlock()
    }

    /// True once the op has finished (successfully or not).
    public var isCompleted: Bool {
        condition.lock(); defer { condition.unlock() }
        return done
    }

    /// Blocks until the op completes; throws its error (a `CollectiveError`).
    /// If the op is next in its group's queue and nothing else runs, the waiting thread
    /// runs it itself instead of handing it to the communication thread (lower latency;
    /// same order and semantics).
    public func wait() throws {
        condition.lock()
        let q = queue
        queue = nil
        condition.unlock()
        q?.helpRun(self)
        condition.lock()
        while !done { condition.wait() }
        let e = error
        condition.unlock()
        if let e { throw e }
    }
}

/// The handle of an async op on a `Tensor`; `wait()` returns the result tensor.
public struct TensorWork: Sendable {
    let work: CollectiveWork
    let box: TensorBox
    /// Blocks until the op completes and returns the resulting tensor.
    public func wait() throws -> Tensor {
        try work.wait()
        return box.tensor
    }
    /// True once the op has finished.
    public var isCompleted: Bool { work.isCompleted }
}

/// Owns a tensor while the communication thread writes its storage.
/// `@unchecked Sendable`: only the comm thread touches the storage until `wait()` returns,
/// and `wait()` reads `tensor` after the op's completion (happens-before via the lock).
final class TensorBox: @unchecked Sendable {
    var tensor: Tensor
    init(_ tensor: Tensor) { self.tensor = tensor }
}
