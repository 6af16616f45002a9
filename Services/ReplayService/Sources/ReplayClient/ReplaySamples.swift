import ReplayStorage
import Synchronization

/// One sample at a time from a table, with many in flight: `ReplaySampler.samples(...)`.
///
/// Workers (tasks) each hold one SampleStream call (Reverb's model: one long-lived
/// bidirectional stream per worker) and ask on it for `samplesPerCall` more items whenever
/// the in-flight budget has room; the server answers each request in flexible batches of
/// up to `flexibleBatchSize` items per response message, and the worker hands each decoded
/// response whole to the consumer side. The consumer's `next()` returns one sample per call
/// from the response it holds and touches shared state only when it needs the next
/// response (once per response, not per sample). Finishing a response frees its room, which
/// goes to the next waiting worker as a new request on its open call: no call setup per
/// batch.
///
/// In flight: a worker sends a request only when `maxInFlight` leaves room for all of it,
/// counting every sample requested from the server and not yet consumed (a response counts
/// until `next()` has returned all of it and takes up the next one). So the server never
/// samples more than `maxInFlight` items ahead of the consumer (Reverb's
/// `max_in_flight_samples_per_worker`, with the limit shared by all workers).
///
/// Order: with one worker, samples come in the server's order; with several, responses of
/// different calls interleave (each response's items stay in order).
///
/// Stopping: `stop()` sends no further request, closes each call's request side, reads the
/// calls to their end (the server answers what was asked) and
/// returns every sample received but not handed out by `next()`, so nothing the server
/// sampled is lost or delivered twice (e.g. a queue table: delivered + returned = the
/// server's sample count). Cancelling the consumer's task, or dropping the iterator without
/// `stop()`, cancels the calls in flight instead: the samples they carried are dropped.
public struct ReplaySamples: AsyncSequence, Sendable {
    public typealias Element = ReplaySample
    public typealias Failure = any Error

    /// The sampler whose client, table and timeout are used.
    public let sampler: ReplaySampler
    /// Samples to deliver in all (nil: until stopped).
    public let limit: Int?
    /// Concurrent SampleStream calls (one per worker) at most.
    public let workers: Int
    /// Items per request on a worker's call.
    public let samplesPerCall: Int
    /// Items per response message.
    public let flexibleBatchSize: Int
    /// Samples requested and not yet handed to the consumer side, at most.
    public let maxInFlight: Int
    /// Whether each worker opens its own connection (`ReplayClient.connect()`) instead of
    /// sharing the sampler's.
    public let connectionPerWorker: Bool

    init(sampler: ReplaySampler, limit: Int?, workers: Int, maxInFlight: Int, flexibleBatchSize: Int,
         samplesPerCall: Int?, connectionPerWorker: Bool) {
        self.sampler = sampler
        self.connectionPerWorker = connectionPerWorker
        self.limit = limit
        self.workers = workers
        self.maxInFlight = maxInFlight
        self.flexibleBatchSize = flexibleBatchSize
        self.samplesPerCall = samplesPerCall ?? Swift.max(1, Swift.min(maxInFlight / workers, flexibleBatchSize))
    }

    public func makeAsyncIterator() -> Iterator { Iterator(config: self) }

    /// Iterates one sample per `next()`; see `ReplaySamples`.
    public struct Iterator: AsyncIteratorProtocol {
        let owner: FeedOwner
        var batch: [ReplaySample] = []
        var index = 0

        init(config: ReplaySamples) { owner = FeedOwner(SampleFeed(config)) }

        /// The next sample; nil once `limit` samples were delivered (or after `stop()`).
        /// Throws the first error of a SampleStream call (after the samples received before it)
        /// and `CancellationError` when the awaiting task is cancelled.
        public mutating func next() async throws -> ReplaySample? {
            if index < batch.count {
                defer { index += 1 }
                return batch[index]
            }
            let consumed = batch.count
            batch = []
            index = 0
            guard let next = try await owner.feed.take(releasing: consumed) else { return nil }
            batch = next
            index = 1
            return next[0]
        }

        /// Stops: no new request is sent, the calls in flight are read to their end, and
        /// the samples received but not yet returned by `next()` are returned (in the order
        /// `next()` would have returned them). `next()` returns nil afterwards. Rethrows a
        /// call's error other than cancellation.
        public mutating func stop() async throws -> [ReplaySample] {
            var rest = Array(batch[Swift.min(index, batch.count)...])
            batch = []
            index = 0
            rest += try await owner.feed.stop()
            return rest
        }
    }
}

extension ReplaySampler {
    /// Single samples of the table (see `ReplaySamples`): `limit` in all (nil: until
    /// `stop()`), `workers` SampleStream calls, at most `maxInFlight` samples requested
    /// ahead of the consumer (default 256, like Reverb's sampler in the bench), responses of
    /// up to `flexibleBatchSize` items (0: this sampler's `flexibleBatchSize`, or 64 when
    /// that is 0 too), requests of `samplesPerCall` items (default: the smaller of
    /// `maxInFlight / workers` and the response size). This sampler's `batchSize` is not
    /// used. With `connectionPerWorker` (default), each worker opens its own HTTP/2
    /// connection to the server (`ReplayClient.connect()`, closed when the worker ends), so
    /// the workers' responses are received and sent on different event loops in parallel
    /// (frames: ~1.5x the samples/s of one shared connection on 2 cores); otherwise all calls
    /// share the sampler's connection.
    public func samples(limit: Int? = nil, workers: Int = 2, maxInFlight: Int = 256, flexibleBatchSize: Int = 0,
                        samplesPerCall: Int? = nil, connectionPerWorker: Bool = true) throws(ReplayError) -> ReplaySamples {
        guard workers >= 1 else { throw ReplayError(.invalidArgument, "samples of '\(table)': workers \(workers) must be >= 1") }
        guard maxInFlight >= 1 else {
            throw ReplayError(.invalidArgument, "samples of '\(table)': maxInFlight \(maxInFlight) must be >= 1")
        }
        if let limit, limit < 0 { throw ReplayError(.invalidArgument, "samples of '\(table)': limit \(limit) must be >= 0") }
        if let samplesPerCall, samplesPerCall < 1 || samplesPerCall > maxInFlight {
            throw ReplayError(.invalidArgument,
                              "samples of '\(table)': samplesPerCall \(samplesPerCall) must be in 1...maxInFlight (\(maxInFlight))")
        }
        guard flexibleBatchSize >= 0 else {
            throw ReplayError(.invalidArgument, "samples of '\(table)': flexibleBatchSize \(flexibleBatchSize) must be >= 0")
        }
        let flex = flexibleBatchSize > 0 ? flexibleBatchSize : (self.flexibleBatchSize > 0 ? self.flexibleBatchSize : 64)
        return ReplaySamples(sampler: self, limit: limit, workers: workers, maxInFlight: maxInFlight,
                             flexibleBatchSize: flex, samplesPerCall: samplesPerCall, connectionPerWorker: connectionPerWorker)
    }
}

/// Cancels the feed's calls when the last copy of an iterator goes away without `stop()`.
final class FeedOwner: Sendable {
    let feed: SampleFeed
    init(_ feed: SampleFeed) { self.feed = feed }
    deinit { feed.cancel() }
}

/// The state shared by an iterator and its workers: responses received and not yet taken,
/// the in-flight budget, the waiting consumer and workers. All under one mutex; no
/// continuation is resumed while holding it.
final class SampleFeed: Sendable {
    let config: ReplaySamples

    private struct State: ~Copyable {
        var started = false
        var stopping = false
        var cancelled = false
        /// Received responses not yet taken (head at `head`).
        var ready: [[ReplaySample]] = []
        var head = 0
        /// Samples requested from the server and not yet taken by the consumer side.
        var inFlight = 0
        /// Samples requested so far (against `limit`).
        var requested = 0
        var workersRunning = 0
        var error: (any Error)?
        var consumer: CheckedContinuation<[ReplaySample]?, any Error>?
        /// Workers waiting for room: (id, wanted count, continuation resumed with the
        /// granted count, 0 = stop).
        var waiting: [(id: Int, want: Int, continuation: CheckedContinuation<Int, Never>)] = []
        var tasks: [Task<Void, Never>] = []
        var stopWaiter: CheckedContinuation<Void, Never>?

        var hasReady: Bool { head < ready.count }

        mutating func popReady() -> [ReplaySample] {
            let b = ready[head]
            head += 1
            if head == ready.count { ready.removeAll(keepingCapacity: true); head = 0 }
            return b
        }
    }

    private let state = Mutex(State())

    init(_ config: ReplaySamples) { self.config = config }

    // MARK: Consumer side

    /// What the consumer does next: take a ready response, end, fail, or wait.
    enum TakeAction { case batch([ReplaySample]), end, fail(any Error), wait }

    private func nextLocked(_ s: inout State) -> TakeAction {
        if s.hasReady { return .batch(s.popReady()) }
        if let e = s.error { s.error = nil; s.stopping = true; return .fail(e) }
        if s.workersRunning == 0 || s.cancelled { return .end }
        return .wait
    }

    /// The next response (nil when every worker finished and nothing is left). `released`:
    /// the size of the response the consumer has finished with; its room goes to waiting
    /// workers now. (A response counts against `maxInFlight` until the consumer is done with
    /// it, so what `stop()` returns never exceeds `maxInFlight`.)
    func take(releasing released: Int) async throws -> [ReplaySample]? {
        startIfNeeded()
        let (action, grants) = state.withLock { s in
            s.inFlight -= released
            return (nextLocked(&s), grantLocked(&s))
        }
        for (c, n) in grants { c.resume(returning: n) }
        switch action {
        case .batch(let b):
            return b
        case .end: return nil
        case .fail(let e): throw e
        case .wait: break
        }
        // Wait for a response (or the end, or an error).
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<[ReplaySample]?, any Error>) in
                let now: TakeAction = state.withLock { s in
                    if Task.isCancelled { return .fail(CancellationError()) }
                    let next = nextLocked(&s)
                    if case .wait = next { s.consumer = c }  // parked: a worker resumes it
                    return next
                }
                switch now {
                case .batch(let b):
                    c.resume(returning: b)
                case .end: c.resume(returning: nil)
                case .fail(let e): c.resume(throwing: e)
                case .wait: break
                }
            }
        } onCancel: {
            let c: CheckedContinuation<[ReplaySample]?, any Error>? = state.withLock { s in
                defer { s.consumer = nil }
                return s.consumer
            }
            c?.resume(throwing: CancellationError())
            cancel()
        }
    }

    /// Stops the workers after their current calls and returns what was received and not
    /// taken.
    func stop() async throws -> [ReplaySample] {
        let grants: [CheckedContinuation<Int, Never>] = state.withLock { s in
            s.stopping = true
            defer { s.waiting.removeAll() }
            return s.waiting.map(\.continuation)
        }
        for g in grants { g.resume(returning: 0) }
        // Wait until every worker has finished its call.
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s in
                if s.workersRunning == 0 { return true }
                s.stopWaiter = c
                return false
            }
            if done { c.resume() }
        }
        return try state.withLock { s throws in
            var rest: [ReplaySample] = []
            while s.hasReady { rest += s.popReady() }
            s.inFlight = 0
            s.cancelled = true  // next() returns nil from now on
            if let e = s.error, !(e is CancellationError) { s.error = nil; throw e }
            return rest
        }
    }

    /// Cancels the workers' calls (samples in flight are dropped).
    func cancel() {
        let (tasks, grants, consumer): ([Task<Void, Never>], [CheckedContinuation<Int, Never>], CheckedContinuation<[ReplaySample]?, any Error>?) =
            state.withLock { s in
                s.cancelled = true
                s.stopping = true
                defer { s.waiting.removeAll(); s.consumer = nil }
                return (s.tasks, s.waiting.map(\.continuation), s.consumer)
            }
        for g in grants { g.resume(returning: 0) }
        consumer?.resume(returning: nil)
        for t in tasks { t.cancel() }
    }

    // MARK: Workers

    private func startIfNeeded() {
        let workers: Int? = state.withLock { s in
            if s.started { return nil }
            s.started = true
            if s.stopping || s.cancelled { return 0 }
            let n = config.limit.map { Swift.min(config.workers, Swift.max(0, ($0 + config.samplesPerCall - 1) / config.samplesPerCall)) }
                ?? config.workers
            s.workersRunning = n
            return n
        }
        guard let workers, workers > 0 else { return }
        var tasks: [Task<Void, Never>] = []
        for id in 0..<workers {
            tasks.append(Task { [self] in await work(id: id) })
        }
        state.withLock { $0.tasks = tasks }
    }

    /// Grants room to waiting workers in arrival order while `maxInFlight` allows; returns
    /// the continuations to resume (after unlocking) with their counts.
    private func grantLocked(_ s: inout State) -> [(CheckedContinuation<Int, Never>, Int)] {
        var out: [(CheckedContinuation<Int, Never>, Int)] = []
        while let w = s.waiting.first {
            let n = admitLocked(&s, want: w.want)
            if n < 0 { break }
            s.waiting.removeFirst()
            out.append((w.continuation, n))
        }
        return out
    }

    /// How many samples a worker may request now: 0 to stop, -1 to wait.
    private func admitLocked(_ s: inout State, want: Int) -> Int {
        if s.stopping || s.cancelled { return 0 }
        var n = want
        if let limit = config.limit { n = Swift.min(n, limit - s.requested) }
        if n <= 0 { return 0 }
        if s.inFlight + n > config.maxInFlight { return -1 }
        s.inFlight += n
        s.requested += n
        return n
    }

    /// Room for one request: the granted count, 0 to stop (also when the task is cancelled:
    /// the worker's call ended while its producer waited).
    private func reserve(id: Int) async -> Int {
        let want = config.samplesPerCall
        let now: Int = state.withLock { s in admitLocked(&s, want: want) }
        if now >= 0 { return now }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Int, Never>) in
                let n: Int = state.withLock { s in
                    if Task.isCancelled { return 0 }
                    let n = admitLocked(&s, want: want)
                    if n < 0 { s.waiting.append((id, want, c)) }
                    return n
                }
                if n >= 0 { c.resume(returning: n) }
            }
        } onCancel: {
            let c: CheckedContinuation<Int, Never>? = state.withLock { s in
                guard let i = s.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiting.remove(at: i).continuation
            }
            c?.resume(returning: 0)
        }
    }

    private func push(_ batch: [ReplaySample]) {
        guard !batch.isEmpty else { return }
        let consumer: CheckedContinuation<[ReplaySample]?, any Error>? = state.withLock { s in
            if let c = s.consumer, !s.hasReady {
                // Straight to the waiting consumer (its room is freed when it is done with it).
                s.consumer = nil
                return c
            }
            s.ready.append(batch)
            return nil
        }
        consumer?.resume(returning: batch)
    }

    /// One worker: one SampleStream call for its whole life, asking for `samplesPerCall`
    /// more samples whenever the in-flight budget has room, until stopped, cancelled or
    /// past `limit`; then the server answers what was asked and the call ends.
    private func work(id: Int) async {
        let sampler = config.sampler
        let asked = Counter()
        let received = Counter()
        var failure: (any Error)?
        var own: ReplayClient?
        do {
            let client: ReplayClient
            if config.connectionPerWorker {
                own = try sampler.client.connect()
                client = own!
            } else {
                client = sampler.client
            }
            try await client.sampleStream(
                table: sampler.table, flexibleBatchSize: config.flexibleBatchSize, timeout: sampler.timeout,
                more: { [self] in
                    let n = await reserve(id: id)
                    asked.add(n)
                    return n
                },
                onBatch: { [self] batch in
                    received.add(batch.count)
                    push(batch)
                })
        } catch {
            failure = error
        }
        await own?.close()
        let missing = asked.value - received.value
        if missing > 0 {
            // The call ended early: give its unused room back.
            state.withLock { s in
                s.inFlight -= missing
                s.requested -= missing
            }
        }
        finish(failure)
    }

    private func finish(_ failure: (any Error)?) {
        let (consumer, stopWaiter, grants, result): (CheckedContinuation<[ReplaySample]?, any Error>?, CheckedContinuation<Void, Never>?,
                                                     [CheckedContinuation<Int, Never>], Result<[ReplaySample]?, any Error>?) =
            state.withLock { s in
                s.workersRunning -= 1
                if let failure, s.error == nil, !s.cancelled {
                    s.error = failure
                    s.stopping = true
                }
                var grants: [CheckedContinuation<Int, Never>] = []
                if s.stopping {
                    grants = s.waiting.map(\.continuation)
                    s.waiting.removeAll()
                }
                var consumer: CheckedContinuation<[ReplaySample]?, any Error>?
                var result: Result<[ReplaySample]?, any Error>?
                if let c = s.consumer, !s.hasReady {
                    if let e = s.error {
                        s.error = nil
                        consumer = c
                        result = .failure(e)
                    } else if s.workersRunning == 0 {
                        consumer = c
                        result = .success(nil)
                    }
                    if consumer != nil { s.consumer = nil }
                }
                var stopWaiter: CheckedContinuation<Void, Never>?
                if s.workersRunning == 0 {
                    stopWaiter = s.stopWaiter
                    s.stopWaiter = nil
                }
                return (consumer, stopWaiter, grants, result)
            }
        for g in grants { g.resume(returning: 0) }
        if let consumer, let result { consumer.resume(with: result) }
        stopWaiter?.resume()
    }
}

/// Samples asked for or received on one call (atomic: the request producer and the
/// response handler run concurrently).
private final class Counter: Sendable {
    private let n = Atomic<Int>(0)
    func add(_ k: Int) { n.add(k, ordering: .relaxed) }
    var value: Int { n.load(ordering: .relaxed) }
}
