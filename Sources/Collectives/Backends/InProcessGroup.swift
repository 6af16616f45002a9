import Foundation
import TensorCore

/// The shared state of N in-process ranks: one mailbox per destination rank.
///
/// Messages are copied eagerly into the mailbox (a send never blocks); a posted
/// receive is matched in post order per (source, channel, tag), as MPI matches.
///
/// `@unchecked Sendable`: every mailbox guards its queues with its own lock.
public final class InProcessWorld: @unchecked Sendable {
    /// The number of ranks.
    public let size: Int
    let mailboxes: [Mailbox]

    /// Creates the shared state of `size` ranks.
    public init(size: Int) {
        precondition(size >= 1, "InProcessWorld: size \(size) must be >= 1")
        self.size = size
        mailboxes = (0..<size).map { _ in Mailbox() }
    }

    /// Creates the group object of every rank (each with its own communication thread).
    public func makeGroups(timeout: Double = 30) -> [InProcessGroup] {
        (0..<size).map { InProcessGroup(world: self, rank: $0, timeout: timeout) }
    }

    /// Runs `body` on `size` ranks, each on its own thread with its own group, and
    /// returns the results in rank order. If any rank throws, the error of the lowest
    /// such rank is rethrown after all ranks have returned (peers waiting for a failed
    /// rank fail with a timeout after `timeout` seconds, so this never hangs).
    public static func run<T: Sendable>(size: Int, timeout: Double = 30,
                                        _ body: @escaping @Sendable (InProcessGroup) throws -> T) throws -> [T] {
        let world = InProcessWorld(size: size)
        let groups = world.makeGroups(timeout: timeout)
        let results = ResultSlots<T>(count: size)
        let done = DispatchGroup()
        // The threads reach `body` only through `holder`, which this thread empties after
        // they finished: whatever `body` captured is released here, before `run` returns,
        // not later by an exiting thread (memory measurements after `run` stay exact).
        let holder = BodyHolder(body)
        for g in groups {
            done.enter()
            let t = Thread {
                do { results.set(g.rank, .success(try holder.call(g))) } catch { results.set(g.rank, .failure(error)) }
                done.leave()
            }
            t.stackSize = 8 << 20
            t.start()
        }
        done.wait()
        holder.clear()
        for g in groups { g.shutdown() }
        return try results.values()
    }
}

/// The body of `InProcessWorld.run`, shared by the rank threads until `clear()`.
/// `@unchecked Sendable`: `body` is read by the rank threads and cleared by the caller
/// only after all of them finished (ordered by the DispatchGroup).
private final class BodyHolder<T>: @unchecked Sendable {
    private var body: (@Sendable (InProcessGroup) throws -> T)?
    init(_ body: @escaping @Sendable (InProcessGroup) throws -> T) { self.body = body }
    func call(_ g: InProcessGroup) throws -> T { try body!(g) }
    func clear() { body = nil }
}

/// Per-rank result slots for `InProcessWorld.run`.
/// `@unchecked Sendable`: guarded by `lock`.
private final class ResultSlots<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<T, any Error>?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<T, any Error>) { lock.lock(); slots[i] = r; lock.unlock() }
    func values() throws -> [T] {
        lock.lock(); defer { lock.unlock() }
        return try slots.map { try $0!.get() }
    }
}

/// Where a message or a posted receive waits: (source, channel, tag).
struct MailKey: Hashable {
    let source: Int
    let channel: Int
    let tag: Int
}

/// A posted receive; `done`/`receivedBytes` are guarded by the mailbox lock.
final class PostedRecv: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer?
    let bytes: Int
    let key: MailKey
    var done = false
    var receivedBytes = 0
    init(pointer: UnsafeMutableRawPointer?, bytes: Int, key: MailKey) {
        self.pointer = pointer
        self.bytes = bytes
        self.key = key
    }
}

/// One destination rank's incoming messages and posted receives.
/// `@unchecked Sendable`: all state is guarded by `condition`'s lock.
final class Mailbox: @unchecked Sendable {
    let condition = NSCondition()
    private var messages: [MailKey: [[UInt8]]] = [:]
    private var posted: [MailKey: [PostedRecv]] = [:]

    /// Delivers a message: straight into the oldest matching posted receive, else queued.
    func deliver(_ key: MailKey, _ pointer: UnsafeRawPointer?, bytes: Int) {
        condition.lock()
        defer { condition.unlock() }
        if var list = posted[key], !list.isEmpty {
            let r = list.removeFirst()
            posted[key] = list.isEmpty ? nil : list
            if bytes == r.bytes, bytes > 0 { r.pointer!.copyMemory(from: pointer!, byteCount: bytes) }
            r.receivedBytes = bytes
            r.done = true
            condition.broadcast()
            return
        }
        let copy = bytes == 0 ? [] : Array(UnsafeRawBufferPointer(start: pointer, count: bytes))
        messages[key, default: []].append(copy)
    }

    /// Posts a receive; matches an already queued message at once.
    func post(_ r: PostedRecv) {
        condition.lock()
        defer { condition.unlock() }
        if var list = messages[r.key], !list.isEmpty {
            let m = list.removeFirst()
            messages[r.key] = list.isEmpty ? nil : list
            if m.count == r.bytes, m.count > 0 {
                m.withUnsafeBytes { r.pointer!.copyMemory(from: $0.baseAddress!, byteCount: m.count) }
            }
            r.receivedBytes = m.count
            r.done = true
            return
        }
        posted[r.key, default: []].append(r)
    }

    /// Waits for `r` until `deadline`; false on timeout (the receive is withdrawn).
    func wait(_ r: PostedRecv, deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !r.done {
            if !condition.wait(until: deadline) && !r.done {
                if var list = posted[r.key] {
                    list.removeAll { $0 === r }
                    posted[r.key] = list.isEmpty ? nil : list
                }
                return false
            }
        }
        return true
    }
}

/// One rank of an `InProcessWorld`: the in-process backend of `ProcessGroup`.
///
/// Native collectives are built from eager copies between mailboxes: allReduce sums in
/// rank order `((x0 + x1) + x2) + ...`, so it is the sequential oracle our algorithms
/// are checked against. `@unchecked Sendable`: immutable except `step`, which lives in
/// the locked `CommQueue`.
public final class InProcessGroup: ProcessGroup, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public let timeout: Double
    public var backendName: String { "inprocess" }
    let world: InProcessWorld
    let queue: CommQueue
    let pool = ScratchPool()

    init(world: InProcessWorld, rank: Int, timeout: Double) {
        self.world = world
        self.rank = rank
        self.size = world.size
        self.timeout = timeout
        queue = CommQueue(rank: rank, name: "loom.inprocess.rank\(rank)")
    }

    deinit { queue.shutdown() }

    public var step: Int {
        get { queue.step }
        set { queue.step = newValue }
    }

    /// Stops the communication thread after the queued ops.
    public func shutdown() { queue.shutdown() }

    func transport(_ ctx: OpContext) -> InProcessTransport {
        InProcessTransport(world: world, rank: rank, pool: pool, context: ctx, deadline: Date(timeIntervalSinceNow: timeout), timeout: timeout)
    }

    public func allReduceAsync(_ buffer: CollectiveBuffer, op: ReduceOp, options: CollectiveOptions) -> CollectiveWork {
        let size = size
        return queue.submit(op: "allReduce(\(options.algorithm.rawValue))", collective: true) { [self] ctx in
            try checkReduceDType(buffer.dtype, ctx: ctx, compression: options.compression)
            let t = transport(ctx)
            if options.algorithm == .native {
                if options.compression != .none {
                    throw CollectiveError.unsupported(rank: ctx.rank, op: ctx.op, message: "compression \(options.compression.rawValue) needs algorithm ring")
                }
                try nativeAllReduce(t, buffer, op: op.accumulating)
            } else {
                try runAllReduce(t, buffer, op: op.accumulating, options: options, ctx: ctx)
            }
            if op == .average { divideInPlace(buffer, by: size) }
        }
    }

    public func reduceScatterAsync(send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], op: ReduceOp, options: CollectiveOptions) -> CollectiveWork {
        let size = size
        return queue.submit(op: "reduceScatter(\(options.algorithm.rawValue))", collective: true) { [self] ctx in
            try checkReduceDType(send.dtype, ctx: ctx, compression: .none)
            try checkCounts(counts, send: send, recv: recv, gather: false, ctx: ctx)
            let t = transport(ctx)
            switch options.algorithm {
            case .native: try nativeReduceScatter(t, send: send, recv: recv, counts: counts, op: op.accumulating)
            case .ring: try ringReduceScatter(t, send: send, recv: recv, counts: counts, op: op.accumulating, chunkBytes: options.chunkBytes)
            default: throw CollectiveError.unsupported(rank: ctx.rank, op: ctx.op, message: "reduceScatter supports algorithms native and ring, not \(options.algorithm.rawValue)")
            }
            if op == .average { divideInPlace(recv, by: size) }
        }
    }

    public func allGatherAsync(send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], options: CollectiveOptions) -> CollectiveWork {
        queue.submit(op: "allGather(\(options.algorithm.rawValue))", collective: true) { [self] ctx in
            try checkCounts(counts, send: send, recv: recv, gather: true, ctx: ctx)
            let t = transport(ctx)
            switch options.algorithm {
            case .native: try nativeAllGather(t, send: send, recv: recv, counts: counts)
            case .ring: try ringAllGather(t, send: send, recv: recv, counts: counts, chunkBytes: options.chunkBytes)
            default: throw CollectiveError.unsupported(rank: ctx.rank, op: ctx.op, message: "allGather supports algorithms native and ring, not \(options.algorithm.rawValue)")
            }
        }
    }

    public func broadcastAsync(_ buffer: CollectiveBuffer, root: Int) -> CollectiveWork {
        queue.submit(op: "broadcast(root \(root))", collective: true) { [self] ctx in
            try checkPeer(root, ctx: ctx, what: "root")
            try nativeBroadcast(transport(ctx), buffer, root: root)
        }
    }

    public func sendAsync(_ buffer: CollectiveBuffer, to peer: Int, tag: Int) -> CollectiveWork {
        queue.submit(op: "send(to \(peer), tag \(tag))", collective: false) { [self] ctx in
            try checkPeer(peer, ctx: ctx, what: "destination")
            try checkTag(tag, ctx: ctx)
            let t = transport(ctx)
            try t.wait(t.isend(buffer.pointer, bytes: buffer.byteCount, to: peer, tag: tag))
        }
    }

    public func recvAsync(_ buffer: CollectiveBuffer, from peer: Int, tag: Int) -> CollectiveWork {
        queue.submit(op: "recv(from \(peer), tag \(tag))", collective: false) { [self] ctx in
            try checkPeer(peer, ctx: ctx, what: "source")
            try checkTag(tag, ctx: ctx)
            let t = transport(ctx)
            try t.wait(t.irecv(buffer.pointer, bytes: buffer.byteCount, from: peer, tag: tag))
        }
    }

    public func sendRecvAsync(send: CollectiveBuffer, to dst: Int, recv: CollectiveBuffer, from src: Int, tag: Int) -> CollectiveWork {
        queue.submit(op: "sendRecv(to \(dst), from \(src), tag \(tag))", collective: false) { [self] ctx in
            try checkPeer(dst, ctx: ctx, what: "destination")
            try checkPeer(src, ctx: ctx, what: "source")
            try checkTag(tag, ctx: ctx)
            try transport(ctx).sendRecv(send.pointer, sendBytes: send.byteCount, to: dst, recv.pointer, recvBytes: recv.byteCount, from: src, tag: tag)
        }
    }

    public func barrierAsync() -> CollectiveWork {
        queue.submit(op: "barrier", collective: true) { [self] ctx in
            try nativeBarrier(transport(ctx))
        }
    }
}

/// Point-to-point messaging between in-process ranks for one op.
struct InProcessTransport: Transport {
    /// A send completes at once (eager copy); a receive waits on the mailbox.
    enum Request {
        case sent
        case recv(PostedRecv, peer: Int)
    }

    let world: InProcessWorld
    let rank: Int
    let pool: ScratchPool
    let context: OpContext
    let deadline: Date
    let timeout: Double
    var size: Int { world.size }

    func isend(_ pointer: UnsafeRawPointer?, bytes: Int, to peer: Int, tag: Int) throws -> Request {
        WireStats.add(bytes)
        world.mailboxes[peer].deliver(MailKey(source: rank, channel: context.channel, tag: tag), pointer, bytes: bytes)
        return .sent
    }

    func irecv(_ pointer: UnsafeMutableRawPointer?, bytes: Int, from peer: Int, tag: Int) throws -> Request {
        let r = PostedRecv(pointer: pointer, bytes: bytes, key: MailKey(source: peer, channel: context.channel, tag: tag))
        world.mailboxes[rank].post(r)
        return .recv(r, peer: peer)
    }

    func wait(_ request: Request) throws {
        guard case let .recv(r, peer) = request else { return }
        if !world.mailboxes[rank].wait(r, deadline: deadline) {
            throw CollectiveError.timeout(rank: rank, peer: peer, op: context.op, sequence: context.sequence, step: context.step, seconds: timeout)
        }
        if r.receivedBytes != r.bytes {
            throw CollectiveError.sizeMismatch(rank: rank, peer: peer, op: context.op, step: context.step, expectedBytes: r.bytes, receivedBytes: r.receivedBytes)
        }
    }
}
