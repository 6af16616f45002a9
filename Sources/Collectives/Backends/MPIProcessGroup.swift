import CMPI
import Foundation
import TensorCore

/// The MPI backend of `ProcessGroup`: one OpenMPI process per rank (`MPI_COMM_WORLD`).
///
/// MPI is initialised lazily by `MPIProcessGroup.world()` with `MPI_Init_thread`
/// (SERIALIZED requested) on the group's communication thread. Ops run one at a time in
/// issue order, on that thread or — for a blocking call on an idle queue — on the calling
/// thread; the latter only if MPI granted SERIALIZED or MULTIPLE, otherwise every MPI call
/// stays on the communication thread (FUNNELED-safe). `MPI_Finalize` runs at process
/// exit (or explicitly via `finalize()`). Merely linking this module never touches MPI.
///
/// Native collectives are MPI's nonblocking ones (`MPI_Iallreduce`, `MPI_Ireduce_scatter`,
/// `MPI_Iallgatherv`, `MPI_Ibcast`, `MPI_Ibarrier`) polled with `MPI_Test` until done or
/// the deadline passes; our algorithms run over `MPI_Isend`/`MPI_Irecv` on a duplicated
/// communicator, point-to-point user messages on another, so the three never match each
/// other's messages. Errors return (MPI_ERRORS_RETURN) and become `CollectiveError`.
///
/// `@unchecked Sendable`: immutable after init except `step` (in the locked CommQueue);
/// the communicators are only used on the communication thread.
public final class MPIProcessGroup: ProcessGroup, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public let timeout: Double
    public var backendName: String { "mpi" }
    /// The thread level MPI granted ("funneled", "serialized", "multiple", "single").
    public let threadLevel: String
    let queue: CommQueue
    let handles: MPIComms
    let pool = ScratchPool()

    private init(rank: Int, size: Int, timeout: Double, threadLevel: String, queue: CommQueue, handles: MPIComms) {
        self.rank = rank
        self.size = size
        self.timeout = timeout
        self.threadLevel = threadLevel
        self.queue = queue
        self.handles = handles
    }

    public var step: Int {
        get { queue.step }
        set { queue.step = newValue }
    }

    /// True when this process was started by `mpirun`/`mpiexec` (OpenMPI or PMIx environment).
    public static var isLaunchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil || env["PMI_RANK"] != nil
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var shared: MPIProcessGroup?
    nonisolated(unsafe) private static var finalized = false

    /// The world group, initialising MPI on first use. `timeout` (seconds) applies to
    /// every op of the group; the first call's value wins.
    public static func world(timeout: Double = 120) throws -> MPIProcessGroup {
        lock.lock()
        defer { lock.unlock() }
        if let g = shared { return g }
        if finalized { throw CollectiveError.backend(rank: -1, op: "MPI init", step: -1, message: "MPI was already finalized in this process") }
        // MPI_Init must run on the communication thread: no caller runs until the level is known.
        let queue = CommQueue(rank: -1, name: "loom.mpi.comm", allowCallerRuns: false)
        let box = InitResult()
        try queue.sync(op: "MPI_Init_thread") { _ in
            var provided: Int32 = 0
            var rc = MPI_Init_thread(nil, nil, Int32(loom_mpi_thread_serialized()), &provided)
            guard rc == loom_mpi_success() else { throw CollectiveError.backend(rank: -1, op: "MPI_Init_thread", step: -1, message: mpiErrorString(rc)) }
            var r: Int32 = 0, s: Int32 = 0
            MPI_Comm_set_errhandler(loom_mpi_comm_world(), loom_mpi_errors_return())
            MPI_Comm_rank(loom_mpi_comm_world(), &r)
            MPI_Comm_size(loom_mpi_comm_world(), &s)
            var comms: [MPI_Comm?] = []
            for _ in 0..<3 {
                var c: MPI_Comm? = nil
                rc = MPI_Comm_dup(loom_mpi_comm_world(), &c)
                guard rc == loom_mpi_success() else { throw CollectiveError.backend(rank: Int(r), op: "MPI_Comm_dup", step: -1, message: mpiErrorString(rc)) }
                MPI_Comm_set_errhandler(c, loom_mpi_errors_return())
                comms.append(c)
            }
            let level: String
            switch provided {
            case Int32(loom_mpi_thread_multiple()): level = "multiple"
            case Int32(loom_mpi_thread_serialized()): level = "serialized"
            case Int32(loom_mpi_thread_funneled()): level = "funneled"
            default: level = "single"
            }
            box.set(rank: Int(r), size: Int(s), level: level, comms: MPIComms(native: comms[0], algorithms: comms[1], user: comms[2]))
        }
        // With SERIALIZED (or better), a thread blocked in wait() may make the MPI calls of
        // the next op itself (never two threads at once: the queue runs one op at a time).
        queue.allowCallerRuns = box.level == "serialized" || box.level == "multiple"
        let g = MPIProcessGroup(rank: box.rank, size: box.size, timeout: timeout, threadLevel: box.level, queue: queue, handles: box.comms!)
        shared = g
        atexit { MPIProcessGroup.finalize() }
        return g
    }

    /// Calls `MPI_Finalize` on the communication thread (after the queued ops) if MPI was
    /// initialised; idempotent. Runs automatically at exit.
    public static func finalize() {
        lock.lock()
        defer { lock.unlock() }
        guard let g = shared, !finalized else { return }
        finalized = true
        shared = nil
        try? g.queue.sync(op: "MPI_Finalize") { _ in _ = MPI_Finalize() }
        g.queue.shutdown()
    }

    /// Aborts every rank of the job (`MPI_Abort`): for fatal errors under mpirun, so the
    /// other ranks do not wait for their timeouts.
    public func abort(code: Int32 = 1) -> Never {
        MPI_Abort(loom_mpi_comm_world(), code)
        exit(code)
    }

    func transport(_ ctx: OpContext, comm: MPI_Comm?) -> MPITransport {
        MPITransport(comm: comm, rank: rank, size: size, pool: pool, context: ctx, deadline: Deadline(seconds: timeout), timeout: timeout)
    }

    func check(_ rc: Int32, _ ctx: OpContext) throws {
        if rc != loom_mpi_success() { throw CollectiveError.backend(rank: rank, op: ctx.op, step: ctx.step, message: mpiErrorString(rc)) }
    }

    func count32(_ n: Int, _ ctx: OpContext) throws -> Int32 {
        guard n <= Int(Int32.max) else {
            throw CollectiveError.invalidArgument(rank: rank, op: ctx.op, message: "count \(n) exceeds MPI's Int32 limit \(Int32.max)")
        }
        return Int32(n)
    }

    public func allReduceAsync(_ buffer: CollectiveBuffer, op: ReduceOp, options: CollectiveOptions) -> CollectiveWork {
        let size = size
        return queue.submit(op: "allReduce(\(options.algorithm.rawValue))", collective: true) { [self] ctx in
            try checkReduceDType(buffer.dtype, ctx: ctx, compression: options.compression)
            if options.algorithm == .native {
                if options.compression != .none {
                    throw CollectiveError.unsupported(rank: rank, op: ctx.op, message: "compression \(options.compression.rawValue) needs algorithm ring")
                }
                let t = transport(ctx, comm: handles.native)
                var req: MPI_Request? = nil
                try check(MPI_Iallreduce(loom_mpi_in_place(), buffer.pointer, try count32(buffer.count, ctx), mpiType(buffer.dtype),
                                         mpiOp(op), handles.native, &req), ctx)
                try t.wait(MPITransport.Request(handle: req, peer: nil, bytes: nil))
            } else {
                try runAllReduce(transport(ctx, comm: handles.algorithms), buffer, op: op.accumulating, options: options, ctx: ctx)
            }
            if op == .average { divideInPlace(buffer, by: size) }
        }
    }

    /// Blocking `MPI_Allreduce` (in place), the reference our algorithms are benchmarked
    /// against. Unlike `allReduce(options: .native)` (which polls `MPI_Iallreduce` so that a
    /// missing peer times out), this call cannot time out: MPI offers no way to bound it.
    /// OpenMPI's blocking collectives use tuned algorithms that are faster than the
    /// nonblocking (libnbc) ones for small messages.
    public func referenceAllReduce(_ buffer: CollectiveBuffer, op: ReduceOp = .sum) throws {
        let size = size
        try queue.submit(op: "MPI_Allreduce", collective: true) { [self] ctx in
            try checkReduceDType(buffer.dtype, ctx: ctx, compression: .none)
            try check(MPI_Allreduce(loom_mpi_in_place(), buffer.pointer, try count32(buffer.count, ctx), mpiType(buffer.dtype),
                                    mpiOp(op), handles.native), ctx)
            if op == .average { divideInPlace(buffer, by: size) }
        }.wait()
    }

    public func reduceScatterAsync(send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], op: ReduceOp, options: CollectiveOptions) -> CollectiveWork {
        let size = size
        return queue.submit(op: "reduceScatter(\(options.algorithm.rawValue))", collective: true) { [self] ctx in
            try checkReduceDType(send.dtype, ctx: ctx, compression: .none)
            try checkCounts(counts, send: send, recv: recv, gather: false, ctx: ctx)
            switch options.algorithm {
            case .native:
                let c32 = try counts.map { try count32($0, ctx) }
                try c32.withUnsafeBufferPointer { cp in
                    var req: MPI_Request? = nil
                    try check(MPI_Ireduce_scatter(send.pointer, recv.pointer, cp.baseAddress, mpiType(send.dtype), mpiOp(op), handles.native, &req), ctx)
                    try transport(ctx, comm: handles.native).wait(MPITransport.Request(handle: req, peer: nil, bytes: nil))
                }
            case .ring:
                try ringReduceScatter(transport(ctx, comm: handles.algorithms), send: send, recv: recv, counts: counts, op: op.accumulating, chunkBytes: options.chunkBytes)
            default:
                throw CollectiveError.unsupported(rank: rank, op: ctx.op, message: "reduceScatter supports algorithms native and ring, not \(options.algorithm.rawValue)")
            }
            if op == .average { divideInPlace(recv, by: size) }
        }
    }

    public func allGatherAsync(send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], options: CollectiveOptions) -> CollectiveWork {
        queue.submit(op: "allGather(\(options.algorithm.rawValue))", collective: true) { [self] ctx in
            try checkCounts(counts, send: send, recv: recv, gather: true, ctx: ctx)
            switch options.algorithm {
            case .native:
                let es = send.dtype.byteSize
                let bytes = try counts.map { try count32($0 * es, ctx) }
                let displs = try shardOffsets(counts).map { try count32($0 * es, ctx) }
                try bytes.withUnsafeBufferPointer { bp in
                    try displs.withUnsafeBufferPointer { dp in
                        var req: MPI_Request? = nil
                        try check(MPI_Iallgatherv(send.pointer, bytes[rank], loom_mpi_byte(), recv.pointer, bp.baseAddress, dp.baseAddress,
                                                  loom_mpi_byte(), handles.native, &req), ctx)
                        try transport(ctx, comm: handles.native).wait(MPITransport.Request(handle: req, peer: nil, bytes: nil))
                    }
                }
            case .ring:
                try ringAllGather(transport(ctx, comm: handles.algorithms), send: send, recv: recv, counts: counts, chunkBytes: options.chunkBytes)
            default:
                throw CollectiveError.unsupported(rank: rank, op: ctx.op, message: "allGather supports algorithms native and ring, not \(options.algorithm.rawValue)")
            }
        }
    }

    public func broadcastAsync(_ buffer: CollectiveBuffer, root: Int) -> CollectiveWork {
        queue.submit(op: "broadcast(root \(root))", collective: true) { [self] ctx in
            try checkPeer(root, ctx: ctx, what: "root")
            var req: MPI_Request? = nil
            try check(MPI_Ibcast(buffer.pointer, try count32(buffer.byteCount, ctx), loom_mpi_byte(), Int32(root), handles.native, &req), ctx)
            try transport(ctx, comm: handles.native).wait(MPITransport.Request(handle: req, peer: root, bytes: nil))
        }
    }

    public func sendAsync(_ buffer: CollectiveBuffer, to peer: Int, tag: Int) -> CollectiveWork {
        queue.submit(op: "send(to \(peer), tag \(tag))", collective: false) { [self] ctx in
            try checkPeer(peer, ctx: ctx, what: "destination")
            try checkTag(tag, ctx: ctx)
            let t = transport(ctx, comm: handles.user)
            try t.wait(t.isend(buffer.pointer, bytes: buffer.byteCount, to: peer, tag: tag))
        }
    }

    public func recvAsync(_ buffer: CollectiveBuffer, from peer: Int, tag: Int) -> CollectiveWork {
        queue.submit(op: "recv(from \(peer), tag \(tag))", collective: false) { [self] ctx in
            try checkPeer(peer, ctx: ctx, what: "source")
            try checkTag(tag, ctx: ctx)
            let t = transport(ctx, comm: handles.user)
            try t.wait(t.irecv(buffer.pointer, bytes: buffer.byteCount, from: peer, tag: tag))
        }
    }

    public func sendRecvAsync(send: CollectiveBuffer, to dst: Int, recv: CollectiveBuffer, from src: Int, tag: Int) -> CollectiveWork {
        queue.submit(op: "sendRecv(to \(dst), from \(src), tag \(tag))", collective: false) { [self] ctx in
            try checkPeer(dst, ctx: ctx, what: "destination")
            try checkPeer(src, ctx: ctx, what: "source")
            try checkTag(tag, ctx: ctx)
            try transport(ctx, comm: handles.user).sendRecv(send.pointer, sendBytes: send.byteCount, to: dst, recv.pointer, recvBytes: recv.byteCount, from: src, tag: tag)
        }
    }

    public func barrierAsync() -> CollectiveWork {
        queue.submit(op: "barrier", collective: true) { [self] ctx in
            var req: MPI_Request? = nil
            try check(MPI_Ibarrier(handles.native, &req), ctx)
            try transport(ctx, comm: handles.native).wait(MPITransport.Request(handle: req, peer: nil, bytes: nil))
        }
    }
}

/// The communicators of the world group, each a dup of MPI_COMM_WORLD.
/// `@unchecked Sendable`: opaque handles, used only on the communication thread.
struct MPIComms: @unchecked Sendable {
    let native: MPI_Comm?
    let algorithms: MPI_Comm?
    let user: MPI_Comm?
}

/// Carries MPI_Init's results out of the communication thread.
/// `@unchecked Sendable`: written once on the comm thread before `sync` returns, read after.
private final class InitResult: @unchecked Sendable {
    var rank = 0, size = 1, level = "single"
    var comms: MPIComms?
    func set(rank: Int, size: Int, level: String, comms: MPIComms) {
        self.rank = rank; self.size = size; self.level = level; self.comms = comms
    }
}

/// A monotonic deadline.
struct Deadline {
    let end: UInt64
    init(seconds: Double) { end = DispatchTime.now().uptimeNanoseconds &+ UInt64(max(seconds, 0) * 1e9) }
    var passed: Bool { DispatchTime.now().uptimeNanoseconds >= end }
}

func mpiErrorString(_ rc: Int32) -> String {
    var buf = [CChar](repeating: 0, count: Int(loom_mpi_max_error_string()) + 1)
    var len: Int32 = 0
    MPI_Error_string(rc, &buf, &len)
    return "MPI error \(rc): " + String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func mpiType(_ dtype: DType) -> MPI_Datatype? {
    switch dtype {
    case .float32: return loom_mpi_float()
    case .float64: return loom_mpi_double()
    case .int32: return loom_mpi_int32()
    case .int64: return loom_mpi_int64()
    default: return loom_mpi_byte()
    }
}

func mpiOp(_ op: ReduceOp) -> MPI_Op? {
    switch op {
    case .sum, .average: return loom_mpi_sum()
    case .product: return loom_mpi_prod()
    case .max: return loom_mpi_max()
    case .min: return loom_mpi_min()
    }
}

/// How a thread waits for an MPI request (`MPITransport.wait`): it polls `MPI_Test` (the
/// communication thread yields every 64 polls); a wait that has lasted `spinMicroseconds`
/// then sleeps between polls (microseconds, doubling from `firstNap` to `longestNap`;
/// 0 = never sleep), so that ranks sharing cores do not take the core a late peer needs to
/// catch up. The threshold is a time, not a poll count: a wait inside a flowing transfer
/// (a 1 MiB ring chunk takes ~0.3 ms here) must not nap, or mid-sized allreduces slow down
/// (a 4096-poll threshold cost 4 MiB allreduces up to 2x). Set before ops run; the
/// environment variables `LOOM_MPI_SPIN_US` and `LOOM_MPI_LONGEST_NAP` (microseconds) set the
/// initial `spinMicroseconds` and `longestNap`.
public enum MPIWaitPolicy {
    nonisolated(unsafe) public static var spinMicroseconds = environment("LOOM_MPI_SPIN_US") ?? 2000
    nonisolated(unsafe) public static var firstNap = 20
    nonisolated(unsafe) public static var longestNap = environment("LOOM_MPI_LONGEST_NAP") ?? 200

    private static func environment(_ name: String) -> Int? {
        ProcessInfo.processInfo.environment[name].flatMap { Int($0) }.map { max(0, $0) }
    }
}

/// Point-to-point over one MPI communicator for one op; waits poll `MPI_Test`.
struct MPITransport: Transport {
    struct Request {
        var handle: MPI_Request?
        /// The peer (for error messages), nil for collectives.
        var peer: Int?
        /// Expected bytes of a receive (checked against the status), nil otherwise.
        var bytes: Int?
    }

    let comm: MPI_Comm?
    let rank: Int
    let size: Int
    let pool: ScratchPool
    let context: OpContext
    let deadline: Deadline
    let timeout: Double

    private func fail(_ rc: Int32) -> CollectiveError {
        .backend(rank: rank, op: context.op, step: context.step, message: mpiErrorString(rc))
    }

    private func tagFor(_ tag: Int) -> Int32 {
        // User messages use their own tag; internal ones are unique per collective channel.
        // (<= 32767, the smallest MPI_TAG_UB MPI guarantees.)
        context.channel < 0 ? Int32(tag) : Int32((context.channel % 2048) * 16 + tag)
    }

    func isend(_ pointer: UnsafeRawPointer?, bytes: Int, to peer: Int, tag: Int) throws -> Request {
        WireStats.add(bytes)
        var req: MPI_Request? = nil
        let rc = MPI_Isend(pointer, Int32(bytes), loom_mpi_byte(), Int32(peer), tagFor(tag), comm, &req)
        if rc != loom_mpi_success() { throw fail(rc) }
        return Request(handle: req, peer: peer, bytes: nil)
    }

    func irecv(_ pointer: UnsafeMutableRawPointer?, bytes: Int, from peer: Int, tag: Int) throws -> Request {
        var req: MPI_Request? = nil
        let rc = MPI_Irecv(pointer, Int32(bytes), loom_mpi_byte(), Int32(peer), tagFor(tag), comm, &req)
        if rc != loom_mpi_success() { throw fail(rc) }
        return Request(handle: req, peer: peer, bytes: bytes)
    }

    func wait(_ request: Request) throws {
        var handle = request.handle
        var flag: Int32 = 0
        var status = MPI_Status()
        var spins = 0
        var nap = MPIWaitPolicy.firstNap, napping = false
        let started = monotonicMicroseconds()
        while true {
            let rc = MPI_Test(&handle, &flag, &status)
            if rc != loom_mpi_success() {
                if rc == 15 /* MPI_ERR_TRUNCATE */, let peer = request.peer, let bytes = request.bytes {
                    throw CollectiveError.sizeMismatch(rank: rank, peer: peer, op: context.op, step: context.step, expectedBytes: bytes, receivedBytes: -1)
                }
                throw fail(rc)
            }
            if flag != 0 { break }
            spins += 1
            // Poll politely: the ranks may share the cores with each other and with the
            // compute threads, and a peer still in its backward pass can keep us waiting for
            // milliseconds. The communication thread (whose caller computes meanwhile)
            // yields every 64 polls; a caller waiting on its own op polls flat out (a yield
            // costs the short waits of small messages up to 2x). Once a wait has lasted
            // `MPIWaitPolicy.spinMicroseconds`, both kinds of thread sleep between polls (MPI
            // progresses only inside MPI_Test, so a nap delays the transfer by at most one nap).
            if spins & 63 == 0 {
                if MPIWaitPolicy.longestNap > 0 && (napping || monotonicMicroseconds() - started >= MPIWaitPolicy.spinMicroseconds) {
                    napping = true
                    usleep(UInt32(nap))
                    nap = min(nap * 2, MPIWaitPolicy.longestNap)
                } else if context.onCommThread {
                    sched_yield()
                }
            }
            if spins & 1023 == 0 {
                if deadline.passed {
                    throw CollectiveError.timeout(rank: rank, peer: request.peer, op: context.op, sequence: context.sequence, step: context.step, seconds: timeout)
                }
            }
        }
        if let bytes = request.bytes, let peer = request.peer {
            var got: Int32 = 0
            MPI_Get_count(&status, loom_mpi_byte(), &got)
            if Int(got) != bytes {
                throw CollectiveError.sizeMismatch(rank: rank, peer: peer, op: context.op, step: context.step, expectedBytes: bytes, receivedBytes: Int(got))
            }
        }
    }
}

/// CLOCK_MONOTONIC in microseconds (vDSO: tens of nanoseconds).
@inline(__always)
func monotonicMicroseconds() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000
}
