/// A snapshot of a table's state for `info()`: sizes and rate limiter statistics.
public struct TableInfo: Codable, Sendable {
    /// The table's configuration.
    public var config: TableConfig
    /// Items held.
    public var size: Int
    /// Rate limiter counters (inserts, samples, deletes).
    public var counters: RateLimiterCounters
    /// How often and how long inserts waited.
    public var insertStats: BlockedStats
    /// How often and how long samples waited.
    public var sampleStats: BlockedStats
    /// Distinct chunks referenced by the items.
    public var uniqueChunks: Int
    /// Bytes of tensor data in those chunks.
    public var chunkBytes: Int
    /// Inserts blocked right now.
    public var waitingInserts: Int
    /// Samples blocked right now.
    public var waitingSamples: Int
}

extension ReplayTable {
    /// Sizes and rate limiter statistics; O(items + chunk references) for the chunk totals.
    public func info() -> TableInfo {
        sync.withLock {
            var seen = Set<ObjectIdentifier>()
            var bytes = 0
            for r in items.values {
                for c in r.item.chunks where seen.insert(ObjectIdentifier(c)).inserted { bytes += c.byteCount }
            }
            return TableInfo(config: config, size: items.count, counters: limiter.counters,
                             insertStats: limiter.insertStats, sampleStats: limiter.sampleStats,
                             uniqueChunks: seen.count, chunkBytes: bytes,
                             waitingInserts: insertWaiters, waitingSamples: sampleWaiters)
        }
    }

    /// Item keys in insertion order (O(n log n)); for diagnostics and tests.
    public func keysInInsertionOrder() -> [UInt64] {
        sync.withLock { items.values.sorted { $0.sequence < $1.sequence }.map(\.item.key) }
    }
}
