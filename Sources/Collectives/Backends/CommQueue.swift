import Foundation

/// A serial queue of ops run by one dedicated thread: the communication thread of a
/// group. Ops run and complete in issue order, one at a time; the first failure poisons
/// the queue. A thread blocked in `wait()` on the next op may run it itself (`helpRun`).
///
/// `@unchecked Sendable`: the pending list, counters, `step` and the poison error are
/// guarded by `condition`'s lock; the op closures run only on the queue's thread.
final class CommQueue: @unchecked Sendable {
    /// One queued op: its handle and the body run on the communication thread. The body
    /// (and whatever it captured: tensors, scratch) is dropped as soon as it has run,
    /// before the handle completes, so an op's buffers are not kept alive by the queue.
    private final class Item {
        let work: CollectiveWork
        var body: (@Sendable (OpContext) throws -> Void)?
        let context: OpContext
        init(work: CollectiveWork, body: @escaping @Sendable (OpContext) throws -> Void, context: OpContext) {
            self.work = work
            self.body = body
            self.context = context
        }
    }

    let rank: Int
    private let condition = NSCondition()
    private var pending: [Item?] = []
    private var head = 0
    private var stopping = false
    private var nextSequence = 0
    private var nextCollective = 0
    private var poison: String?
    private var stepValue = -1
    private var executing = false
    private var callerRuns = true
    private var thread: Thread?

    init(rank: Int, name: String, allowCallerRuns: Bool = true) {
        self.rank = rank
        self.callerRuns = allowCallerRuns
        let t = Thread { [self] in self.loop() }
        t.name = name
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    /// The caller's step label.
    var step: Int {
        get { condition.lock(); defer { condition.unlock() }; return stepValue }
        set { condition.lock(); stepValue = newValue; condition.unlock() }
    }

    /// Queues `body`; `collective` ops get a collective sequence number (the channel
    /// that keeps their internal messages apart), point-to-point ops do not.
    func submit(op: String, collective: Bool, _ body: @escaping @Sendable (OpContext) throws -> Void) -> CollectiveWork {
        condition.lock()
        let seq = nextSequence
        nextSequence += 1
        let channel: Int
        if collective { channel = nextCollective; nextCollective += 1 } else { channel = -1 }
        let work = CollectiveWork(op: op, sequence: seq)
        if stopping {
            // The thread is gone (or going): fail now rather than never.
            condition.unlock()
            work.complete(CollectiveError.poisoned(rank: rank, op: op, firstError: "the group was shut down"))
            return work
        }
        work.queue = self
        let ctx = OpContext(rank: rank, op: op, sequence: seq, channel: channel, step: stepValue)
        pending.append(Item(work: work, body: body, context: ctx))
        condition.signal()
        condition.unlock()
        return work
    }

    /// Runs `body` on the communication thread and waits for it (setup/teardown calls).
    func sync(op: String, _ body: @escaping @Sendable (OpContext) throws -> Void) throws {
        try submit(op: op, collective: false, body).wait()
    }

    /// Lets the thread finish the queued ops and exit.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    /// Runs `work` on the calling thread if it is next in line and nothing is running:
    /// a blocking call then skips two thread hand-offs (tens of µs on a busy machine).
    /// Order is kept: only the head of the queue is taken, and never while another op
    /// runs. Called by `CollectiveWork.wait()`.
    func helpRun(_ work: CollectiveWork) {
        condition.lock()
        guard callerRuns, !executing, head < pending.count, pending[head]?.work === work else {
            condition.unlock()
            return
        }
        let item = take()
        condition.unlock()
        execute(item, onCommThread: false)
    }

    /// Whether waiting threads may run ops themselves (off when MPI grants less than
    /// MPI_THREAD_SERIALIZED, so that every MPI call stays on the communication thread).
    var allowCallerRuns: Bool {
        get { condition.lock(); defer { condition.unlock() }; return callerRuns }
        set { condition.lock(); callerRuns = newValue; condition.unlock() }
    }

    /// Pops the head item and marks the queue busy; lock held by the caller.
    private func take() -> Item {
        let item = pending[head]!
        pending[head] = nil
        head += 1
        if head > 64 && head * 2 > pending.count {
            pending.removeFirst(head)
            head = 0
        }
        executing = true
        return item
    }

    /// Runs one item (poisoned queues fail it fast), then marks the queue idle.
    private func execute(_ item: Item, onCommThread: Bool) {
        condition.lock()
        let poisoned = poison
        condition.unlock()
        var failure: (any Error)?
        if let poisoned {
            failure = CollectiveError.poisoned(rank: rank, op: item.context.op, firstError: poisoned)
        } else {
            var context = item.context
            context.onCommThread = onCommThread
            do { try item.body?(context) } catch { failure = error }
        }
        item.body = nil
        condition.lock()
        if let failure, poisoned == nil, poison == nil { poison = String(describing: failure) }
        executing = false
        condition.broadcast()
        condition.unlock()
        item.work.complete(failure)
    }

    private func loop() {
        while true {
            condition.lock()
            // Wait for work that nobody is running, or for shutdown with nothing left.
            while !((head < pending.count && !executing) || (stopping && head == pending.count && !executing)) { condition.wait() }
            if head == pending.count { condition.unlock(); return }
            let item = take()
            condition.unlock()
            execute(item, onCommThread: true)
        }
    }
}

/// What an op body knows about itself: for error messages and message channels.
struct OpContext: Sendable {
    let rank: Int
    let op: String
    let sequence: Int
    /// The collective channel (collective sequence number), -1 for point-to-point.
    let channel: Int
    let step: Int
    /// True when the group's communication thread runs the op (an async op overlapping
    /// the caller's compute); false when the caller runs it while blocked in `wait()`.
    var onCommThread = false
}
