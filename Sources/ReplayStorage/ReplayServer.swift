import Foundation
import Synchronization

/// A set of named tables with the operations of Reverb's server: insert, sample, mutate
/// priorities, reset, info and checkpoint/restore. The gRPC service maps each RPC onto one
/// method here.
///
/// Thread-safe: the table set is fixed at init; each table has its own lock, so calls on
/// different tables never contend. Checkpoints are serialised by a server-wide lock.
public final class ReplayServer: Sendable {
    /// Tables by name.
    public let tables: [String: ReplayTable]
    /// Table names in config order.
    public let tableNames: [String]
    private let checkpointLock = Mutex<Void>(())
    private let periodic = Mutex<PeriodicCheckpointer?>(nil)

    /// A server with empty tables; throws when a config is invalid or two share a name.
    public convenience init(tables configs: [TableConfig]) throws(ReplayError) {
        var tables: [ReplayTable] = []
        for c in configs { tables.append(try ReplayTable(config: c)) }
        try self.init(tables)
    }

    /// A server over existing tables; throws when two share a name.
    public init(_ tables: [ReplayTable]) throws(ReplayError) {
        var byName: [String: ReplayTable] = [:]
        for t in tables {
            guard byName[t.name] == nil else { throw ReplayError(.invalidArgument, "two tables are named '\(t.name)'") }
            byName[t.name] = t
        }
        self.tables = byName
        tableNames = tables.map(\.name)
    }

    /// A server with the tables of `configs`, restored from the newest complete checkpoint
    /// under `checkpointRoot` when there is one (empty tables otherwise).
    ///
    /// Throws `.configConflict` when a checkpointed table's config differs from the
    /// server's (the message names both values), or the checkpoint holds a table the server
    /// does not configure; nothing is silently applied. Server tables missing from the
    /// checkpoint start empty.
    public convenience init(tables configs: [TableConfig], checkpointRoot: String) throws(ReplayError) {
        guard let dir = ReplayCheckpoint.latest(in: checkpointRoot) else {
            try self.init(tables: configs)
            return
        }
        try self.init(tables: configs, restoringFrom: dir)
    }

    /// A server with the tables of `configs`, restored from checkpoint directory `dir`
    /// (same conflict rules as `init(tables:checkpointRoot:)`; a directory without `DONE`
    /// is refused).
    public convenience init(tables configs: [TableConfig], restoringFrom dir: String) throws(ReplayError) {
        for c in configs { try c.validate() }
        let states = try ReplayCheckpoint.read(dir)
        var byName: [String: TableState] = [:]
        for s in states { byName[s.config.name] = s }
        let configured = Set(configs.map(\.name))
        for s in states where !configured.contains(s.config.name) {
            throw ReplayError(.configConflict,
                              "checkpoint \(dir) holds table '\(s.config.name)', which the server does not configure (server tables: \(configs.map(\.name).joined(separator: ", ")))")
        }
        var tables: [ReplayTable] = []
        for c in configs {
            if var s = byName[c.name] {
                let diffs = s.config.differences(from: c)
                guard diffs.isEmpty else {
                    throw ReplayError(.configConflict,
                                      "checkpoint \(dir): table '\(c.name)' conflicts with the server config (checkpoint vs server): \(diffs.joined(separator: "; "))")
                }
                s.config.seed = c.seed
                tables.append(try ReplayTable(restoring: s))
            } else {
                tables.append(try ReplayTable(config: c))
            }
        }
        try self.init(tables)
    }

    /// A server whose tables and configs all come from checkpoint directory `dir`.
    public convenience init(restoringFrom dir: String) throws(ReplayError) {
        var tables: [ReplayTable] = []
        for s in try ReplayCheckpoint.read(dir) { tables.append(try ReplayTable(restoring: s)) }
        try self.init(tables)
    }

    deinit { stopPeriodicCheckpoints() }

    /// The table called `name`; throws `.notFound` naming the known tables otherwise.
    public func table(_ name: String) throws(ReplayError) -> ReplayTable {
        guard let t = tables[name] else {
            throw ReplayError(.notFound, "unknown table '\(name)' (tables: \(tableNames.joined(separator: ", ")))")
        }
        return t
    }

    /// Inserts `item` into the table it names (see `ReplayTable.insert`).
    public func insert(_ item: ReplayItem, timeout: Duration? = nil) throws(ReplayError) {
        try table(item.table).insert(item, timeout: timeout)
    }

    /// Samples 1...`count` items from `table` (see `ReplayTable.sample`).
    public func sample(table name: String, count: Int = 1, timeout: Duration? = nil) throws(ReplayError) -> [ReplaySample] {
        try table(name).sample(count: count, timeout: timeout)
    }

    /// Samples 1...`count` items from `table` when its rate limiter allows one now, else
    /// none, without waiting (see `ReplayTable.trySample`).
    public func trySample(table name: String, count: Int = 1) throws(ReplayError) -> [ReplaySample] {
        try table(name).trySample(count: count)
    }

    /// Updates priorities and deletes items of `table` (see `ReplayTable.mutatePriorities`).
    public func mutatePriorities(table name: String, updates: [(key: UInt64, priority: Double)] = [],
                                 deletes: [UInt64] = []) throws(ReplayError) {
        try table(name).mutatePriorities(updates: updates, deletes: deletes)
    }

    /// Empties `table` and zeroes its counters.
    public func reset(table name: String) throws(ReplayError) { try table(name).reset() }

    /// Sizes and rate limiter statistics of every table, in config order.
    public func info() -> [TableInfo] { tableNames.map { tables[$0]!.info() } }

    /// Writes every table into a new checkpoint directory under `root`; returns its path.
    @discardableResult
    public func checkpoint(to root: String) throws(ReplayError) -> String {
        try checkpointLock.withLock { _ throws(ReplayError) in
            try ReplayCheckpoint.write(tableNames.map { tables[$0]! }, root: root)
        }
    }

    /// Wakes every blocked call with `.cancelled` and refuses further inserts and samples.
    public func close() {
        stopPeriodicCheckpoints()
        for t in tables.values { t.close() }
    }

    // MARK: - Periodic checkpoints

    /// Starts writing a checkpoint under `root` every `interval` on a background thread
    /// (replacing any earlier schedule). Failures are kept in `lastPeriodicCheckpointError`.
    public func startPeriodicCheckpoints(root: String, every interval: Duration) {
        let p = PeriodicCheckpointer(interval: interval)
        let old = periodic.withLock { slot -> PeriodicCheckpointer? in
            let o = slot
            slot = p
            return o
        }
        old?.stop()
        p.start { [weak self] () -> Bool in
            guard let self else { return false }
            do throws(ReplayError) {
                try self.checkpoint(to: root)
                p.record(nil)
            } catch {
                p.record(error)
            }
            return true
        }
    }

    /// Stops periodic checkpoints (a checkpoint in progress completes).
    public func stopPeriodicCheckpoints() {
        let p = periodic.withLock { slot -> PeriodicCheckpointer? in
            let o = slot
            slot = nil
            return o
        }
        p?.stop()
    }

    /// Periodic checkpoints written so far and the last error (nil after a success).
    public var periodicCheckpointStatus: (written: Int, lastError: ReplayError?) {
        periodic.withLock { $0?.status() ?? (0, nil) }
    }
}

/// A background thread that runs a task every `interval` until stopped.
///
/// `@unchecked Sendable`: its mutable state is only touched while holding `condition`.
final class PeriodicCheckpointer: @unchecked Sendable {
    private let condition = NSCondition()
    private let interval: Duration
    private var stopped = false
    private var written = 0
    private var lastError: ReplayError?

    init(interval: Duration) { self.interval = interval }

    /// Runs `task` every interval on a new thread; `task` returns false to end the loop.
    func start(_ task: @escaping @Sendable () -> Bool) {
        let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) * 1e-18
        Thread.detachNewThread { [self] in
            while true {
                let next = Date(timeIntervalSinceNow: seconds)
                condition.lock()
                while !stopped && Date() < next { _ = condition.wait(until: next) }
                let stop = stopped
                condition.unlock()
                if stop || !task() { return }
            }
        }
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    func record(_ error: ReplayError?) {
        condition.lock()
        if error == nil { written += 1 }
        lastError = error
        condition.unlock()
    }

    func status() -> (Int, ReplayError?) {
        condition.lock()
        defer { condition.unlock() }
        return (written, lastError)
    }
}
