/// The counters of a rate limiter; saved in checkpoints.
public struct RateLimiterCounters: Codable, Sendable, Equatable {
    /// Items inserted since the last reset.
    public var inserts: Int
    /// Samples taken since the last reset.
    public var samples: Int
    /// Items removed (evicted, deleted, or sampled `maxTimesSampled` times) since the last reset.
    public var deletes: Int

    /// Counters with the given values.
    public init(inserts: Int = 0, samples: Int = 0, deletes: Int = 0) {
        self.inserts = inserts
        self.samples = samples
        self.deletes = deletes
    }
}

/// How long calls waited on the limiter (statistics for `info()`; not checkpointed).
public struct BlockedStats: Codable, Sendable, Equatable {
    /// Calls that had to wait at least once.
    public var blockedCalls: Int = 0
    /// Total time those calls spent waiting, in seconds.
    public var blockedSeconds: Double = 0
    /// Calls that gave up because their deadline passed.
    public var timeouts: Int = 0
}

/// Reverb's rate limiter: decides whether an insert or a sample may proceed now.
///
/// A plain value: the table owns one and calls it under the table's lock (see
/// `RateLimiterConfig` for the rules). Each check is O(1).
public struct RateLimiter: Sendable {
    /// The parameters.
    public let config: RateLimiterConfig
    /// The counters.
    public internal(set) var counters: RateLimiterCounters
    /// Waiting statistics of inserts.
    public internal(set) var insertStats = BlockedStats()
    /// Waiting statistics of samples.
    public internal(set) var sampleStats = BlockedStats()

    /// A limiter with `config` and the given counters.
    public init(config: RateLimiterConfig, counters: RateLimiterCounters = RateLimiterCounters()) {
        self.config = config
        self.counters = counters
    }

    /// Whether `n` inserts may proceed now.
    @inlinable
    public func canInsert(_ n: Int = 1) -> Bool {
        if counters.inserts + n - counters.deletes <= config.minSizeToSample { return true }
        return Double(counters.inserts + n) * config.samplesPerInsert - Double(counters.samples) <= config.maxDiff
    }

    /// Whether `n` samples may proceed now.
    @inlinable
    public func canSample(_ n: Int = 1) -> Bool {
        if counters.inserts - counters.deletes < config.minSizeToSample { return false }
        return Double(counters.inserts) * config.samplesPerInsert - Double(counters.samples) - Double(n) >= config.minDiff
    }

    /// Records an insert.
    public mutating func recordInsert() { counters.inserts += 1 }
    /// Records a sample.
    public mutating func recordSample() { counters.samples += 1 }
    /// Records a removal.
    public mutating func recordDelete() { counters.deletes += 1 }
    /// Zeroes the counters and statistics.
    public mutating func reset() {
        counters = RateLimiterCounters()
        insertStats = BlockedStats()
        sampleStats = BlockedStats()
    }
}
