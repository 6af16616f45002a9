/// One stored item with its bookkeeping.
struct ItemRecord: Sendable {
    var item: ReplayItem
    var timesSampled: Int
    /// Insertion sequence number (orders items in checkpoints).
    var sequence: UInt64
}

/// A Reverb-style table: items (trajectories over shared chunks) with priorities, a
/// sampler and a remover selector, a maximum size, a maximum number of samples per item,
/// a rate limiter and an optional signature.
///
/// Concurrency: every method is thread-safe. One mutex per table serialises all calls, so
/// the selectors and the rate limiter need no locking of their own. `insert` and `sample`
/// block (on condition variables, without spinning) while the rate limiter forbids them,
/// up to their timeout; a call whose deadline passes throws `.timeout` and leaves the
/// table unchanged. Priority updates and deletes take effect at once and wake blocked
/// callers whose condition they satisfy.
///
/// Complexity per call: O(log n) for prioritized and heap selectors, O(1) otherwise, plus
/// O(chunks) signature checks on insert.
///
/// `@unchecked Sendable`: all mutable state is only touched while holding `sync`'s mutex.
public final class ReplayTable: @unchecked Sendable {
    /// The table's configuration.
    public let config: TableConfig
    /// The table's name.
    public var name: String { config.name }

    let sync = TableSync()
    // Everything below is guarded by `sync`.
    var items: [UInt64: ItemRecord] = [:]
    let sampler: any ItemSelector
    let remover: any ItemSelector
    var limiter: RateLimiter
    var rng: ReplayRandom
    var nextSequence: UInt64 = 0
    var insertWaiters = 0
    var sampleWaiters = 0
    var closed = false

    /// An empty table; throws when `config` is invalid (see `TableConfig.validate`).
    public init(config: TableConfig) throws(ReplayError) {
        try config.validate()
        self.config = config
        sampler = config.sampler.makeSelector()
        remover = config.remover.makeSelector()
        limiter = RateLimiter(config: config.rateLimiter)
        rng = ReplayRandom(seed: config.seed)
    }

    /// Number of items.
    public var size: Int { sync.withLock { items.count } }

    /// Whether the table holds `key`.
    public func contains(_ key: UInt64) -> Bool { sync.withLock { items[key] != nil } }

    /// The priority of `key`, or nil when absent.
    public func priority(of key: UInt64) -> Double? { sync.withLock { items[key]?.item.priority } }

    /// The rate limiter counters.
    public var counters: RateLimiterCounters { sync.withLock { limiter.counters } }

    // MARK: - Insert

    /// Inserts `item`, waiting up to `timeout` (nil: for ever; zero: not at all) while the
    /// rate limiter forbids inserts. When the table is full the remover picks an item to
    /// evict first.
    ///
    /// Throws (leaving the table unchanged) when the item is for another table, its
    /// priority is NaN, infinite or negative, its step range does not fit its chunks, a
    /// chunk does not match the signature, its key is present, the deadline passes
    /// (`.timeout`), or the table is closed (`.cancelled`).
    public func insert(_ item: ReplayItem, timeout: Duration? = nil) throws(ReplayError) {
        guard item.table == config.name else {
            throw ReplayError(.invalidArgument, "item \(item.key) names table '\(item.table)', inserted into table '\(config.name)'")
        }
        try item.validate()
        if let signature = config.signature {
            for chunk in item.chunks { try signature.check(chunk, table: config.name) }
        }
        let deadline = TableSync.deadline(after: timeout)
        sync.lock()
        defer { sync.unlock() }
        guard items[item.key] == nil else {
            throw ReplayError(.alreadyExists, "table '\(config.name)': item key \(item.key) is already in the table")
        }
        try waitLocked(.insert, deadline: deadline, timeout: timeout, what: "insert of item \(item.key)") { limiter.canInsert(1) }
        guard items[item.key] == nil else {
            throw ReplayError(.alreadyExists, "table '\(config.name)': item key \(item.key) is already in the table")
        }
        if items.count >= config.maxSize {
            removeLocked(remover.sample(&rng).key)
        }
        items[item.key] = ItemRecord(item: item, timesSampled: 0, sequence: nextSequence)
        nextSequence += 1
        sampler.insert(key: item.key, priority: item.priority)
        remover.insert(key: item.key, priority: item.priority)
        limiter.recordInsert()
        signalLocked()
    }

    // MARK: - Sample

    /// Samples between 1 and `count` items: waits up to `timeout` (nil: for ever; zero: not
    /// at all) until the rate limiter allows one sample, then takes further samples while
    /// it allows them without waiting (Reverb's flexible batch). Each sample counts against
    /// the rate limiter; an item sampled `maxTimesSampled` times is removed.
    ///
    /// Throws `.invalidArgument` when `count < 1`, `.timeout` when no sample was allowed
    /// before the deadline (nothing changed), `.cancelled` when the table is closed.
    public func sample(count: Int = 1, timeout: Duration? = nil) throws(ReplayError) -> [ReplaySample] {
        guard count >= 1 else {
            throw ReplayError(.invalidArgument, "table '\(config.name)': sample count \(count) must be >= 1")
        }
        let deadline = TableSync.deadline(after: timeout)
        sync.lock()
        defer { sync.unlock() }
        try waitLocked(.sample, deadline: deadline, timeout: timeout, what: "sample") { !items.isEmpty && limiter.canSample(1) }
        return sampleBatchLocked(count)
    }

    /// Like `sample(count:timeout:)` but never waits: returns between 1 and `count` samples
    /// when the rate limiter allows one now, otherwise an empty array (recording no blocked
    /// call and no timeout). Lets a caller on a thread that must not block (an event loop, a
    /// task) take the common, non-blocking case inline and hand only real waits to a thread.
    ///
    /// Throws `.invalidArgument` when `count < 1`, `.cancelled` when the table is closed.
    public func trySample(count: Int = 1) throws(ReplayError) -> [ReplaySample] {
        guard count >= 1 else {
            throw ReplayError(.invalidArgument, "table '\(config.name)': sample count \(count) must be >= 1")
        }
        sync.lock()
        defer { sync.unlock() }
        if closed { throw ReplayError(.cancelled, "table '\(config.name)': sample refused: the table is closed") }
        guard !items.isEmpty && limiter.canSample(1) else { return [] }
        return sampleBatchLocked(count)
    }

    /// Samples while the rate limiter allows, up to `count` (at least one: the caller checked).
    private func sampleBatchLocked(_ count: Int) -> [ReplaySample] {
        var out: [ReplaySample] = []
        out.reserveCapacity(Swift.min(count, items.count))
        repeat {
            out.append(sampleOneLocked())
        } while out.count < count && !items.isEmpty && limiter.canSample(1)
        signalLocked()
        return out
    }

    private func sampleOneLocked() -> ReplaySample {
        let tableSize = items.count
        let selected = sampler.sample(&rng)
        guard let index = items.index(forKey: selected.key) else {
            preconditionFailure("table '\(config.name)': sampler returned key \(selected.key) that is not in the table")
        }
        items.values[index].timesSampled += 1
        let record = items.values[index]
        limiter.recordSample()
        if config.maxTimesSampled > 0 && record.timesSampled >= config.maxTimesSampled {
            removeLocked(selected.key)
        }
        return ReplaySample(item: record.item,
                            info: SampleInfo(key: selected.key, probability: selected.probability, tableSize: tableSize,
                                             priority: record.item.priority, timesSampled: record.timesSampled))
    }

    // MARK: - Mutations

    /// Sets the priorities of `updates` and removes the items in `deletes`, at once.
    /// Keys not in the table are ignored (they may have been evicted concurrently).
    ///
    /// Throws (changing nothing) when a priority is NaN, infinite or negative.
    public func mutatePriorities(updates: [(key: UInt64, priority: Double)] = [], deletes: [UInt64] = []) throws(ReplayError) {
        for u in updates where !(u.priority.isFinite && u.priority >= 0) {
            throw ReplayError(.invalidArgument, "table '\(config.name)': priority \(u.priority) for item \(u.key) must be finite and >= 0")
        }
        sync.lock()
        defer { sync.unlock() }
        for u in updates {
            guard let index = items.index(forKey: u.key) else { continue }
            items.values[index].item.priority = u.priority
            sampler.update(key: u.key, priority: u.priority)
            remover.update(key: u.key, priority: u.priority)
        }
        for key in deletes where items[key] != nil { removeLocked(key) }
        signalLocked()
    }

    /// Removes every item and zeroes the rate limiter counters (the sampling generator
    /// continues its stream).
    public func reset() {
        sync.withLock {
            items.removeAll()
            sampler.clear()
            remover.clear()
            limiter.reset()
            sync.broadcastInsert()
            sync.broadcastSample()
        }
    }

    /// Wakes every blocked call with `.cancelled`; later inserts and samples throw it too.
    public func close() {
        sync.withLock {
            closed = true
            sync.broadcastInsert()
            sync.broadcastSample()
        }
    }

    // MARK: - Internals (lock held)

    func removeLocked(_ key: UInt64) {
        items.removeValue(forKey: key)
        sampler.delete(key: key)
        remover.delete(key: key)
        limiter.recordDelete()
    }

    /// Wakes waiters whose condition now holds.
    func signalLocked() {
        if sampleWaiters > 0 && !items.isEmpty && limiter.canSample(1) { sync.broadcastSample() }
        if insertWaiters > 0 && limiter.canInsert(1) { sync.broadcastInsert() }
    }

    private func waitLocked(_ waiter: TableSync.Waiter, deadline: UInt64?, timeout: Duration?, what: String,
                            _ ready: () -> Bool) throws(ReplayError) {
        if closed { throw ReplayError(.cancelled, "table '\(config.name)': \(what) refused: the table is closed") }
        if ready() { return }
        let start = TableSync.now()
        if waiter == .insert { insertWaiters += 1 } else { sampleWaiters += 1 }
        defer {
            let seconds = Double(TableSync.now() - start) * 1e-9
            if waiter == .insert {
                insertWaiters -= 1
                limiter.insertStats.blockedCalls += 1
                limiter.insertStats.blockedSeconds += seconds
            } else {
                sampleWaiters -= 1
                limiter.sampleStats.blockedCalls += 1
                limiter.sampleStats.blockedSeconds += seconds
            }
        }
        while !ready() {
            if closed { throw ReplayError(.cancelled, "table '\(config.name)': \(what) cancelled: the table was closed") }
            if let deadline, TableSync.now() >= deadline {
                if waiter == .insert { limiter.insertStats.timeouts += 1 } else { limiter.sampleStats.timeouts += 1 }
                let c = limiter.counters
                throw ReplayError(.timeout,
                                  "table '\(config.name)': \(what) timed out after \(timeout.map { "\($0)" } ?? "?") waiting for the rate limiter (size \(items.count) of max \(config.maxSize), inserts \(c.inserts), samples \(c.samples), deletes \(c.deletes), \(config.rateLimiter))")
            }
            sync.wait(waiter, deadline: deadline)
        }
    }
}
