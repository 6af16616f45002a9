/// The parameters of Reverb's rate limiter; a Codable value for table configs.
///
/// The limiter keeps counters `inserts`, `samples` and `deletes` and allows
/// - an insert of `n` items when `inserts + n - deletes <= minSizeToSample` (the table is
///   still filling), or else when `(inserts + n) * samplesPerInsert - samples <= maxDiff`;
/// - a sample of `n` items when `inserts - deletes >= minSizeToSample` and
///   `inserts * samplesPerInsert - samples - n >= minDiff`.
///
/// So `samplesPerInsert` is the target ratio of samples to inserts and `[minDiff, maxDiff]`
/// the tolerated drift from it (Cassirer et al. 2021, Reverb, section 3.2).
public struct RateLimiterConfig: Codable, Sendable, Equatable, CustomStringConvertible {
    /// Target number of samples per insert (> 0).
    public var samplesPerInsert: Double
    /// Items the table must hold before any sample is allowed (>= 1).
    public var minSizeToSample: Int
    /// Lower bound of `inserts * samplesPerInsert - samples` after a sample.
    public var minDiff: Double
    /// Upper bound of `inserts * samplesPerInsert - samples` after an insert.
    public var maxDiff: Double

    /// A limiter with explicit parameters; throws when `samplesPerInsert <= 0`,
    /// `minSizeToSample < 1`, a bound is NaN, or `minDiff > maxDiff`.
    public init(samplesPerInsert: Double, minSizeToSample: Int, minDiff: Double, maxDiff: Double) throws(ReplayError) {
        self.samplesPerInsert = samplesPerInsert
        self.minSizeToSample = minSizeToSample
        self.minDiff = minDiff
        self.maxDiff = maxDiff
        try validate()
    }

    /// Throws when a parameter is out of range (see `init`); decoded configs call this.
    public func validate() throws(ReplayError) {
        guard samplesPerInsert.isFinite && samplesPerInsert > 0 else {
            throw ReplayError(.invalidArgument, "rate limiter: samplesPerInsert \(samplesPerInsert) must be finite and > 0")
        }
        guard minSizeToSample >= 1 else {
            throw ReplayError(.invalidArgument, "rate limiter: minSizeToSample \(minSizeToSample) must be >= 1")
        }
        guard !minDiff.isNaN && !maxDiff.isNaN && minDiff <= maxDiff else {
            throw ReplayError(.invalidArgument, "rate limiter: minDiff \(minDiff) must be <= maxDiff \(maxDiff)")
        }
    }

    /// Blocks samples until the table holds `minSize` items, then never blocks (Reverb's `MinSize`).
    public static func minSize(_ minSize: Int) throws(ReplayError) -> RateLimiterConfig {
        try RateLimiterConfig(samplesPerInsert: 1, minSizeToSample: minSize,
                              minDiff: -Double.greatestFiniteMagnitude, maxDiff: Double.greatestFiniteMagnitude)
    }

    /// Keeps `samples / inserts` near `samplesPerInsert` once `minSizeToSample` items were
    /// inserted, allowing a drift of `errorBuffer` samples either way (Reverb's
    /// `SampleToInsertRatio`): `minDiff = samplesPerInsert * minSizeToSample - errorBuffer`,
    /// `maxDiff = samplesPerInsert * minSizeToSample + errorBuffer`.
    ///
    /// Validity rule: the range must be at least `2 * max(1, samplesPerInsert)` wide
    /// (`errorBuffer >= max(1, samplesPerInsert)`); a smaller buffer could block inserts
    /// and samples for ever, so it is refused.
    public static func sampleToInsertRatio(samplesPerInsert: Double, minSizeToSample: Int,
                                           errorBuffer: Double) throws(ReplayError) -> RateLimiterConfig {
        let offset = samplesPerInsert * Double(minSizeToSample)
        return try sampleToInsertRatio(samplesPerInsert: samplesPerInsert, minSizeToSample: minSizeToSample,
                                       minDiff: offset - errorBuffer, maxDiff: offset + errorBuffer,
                                       errorBufferDescription: "error buffer \(errorBuffer)")
    }

    /// `sampleToInsertRatio` with an explicit `[minDiff, maxDiff]` range instead of a
    /// symmetric buffer; the same validity rule applies, and `minDiff` may not exceed
    /// `samplesPerInsert * minSizeToSample` (samples would never start).
    public static func sampleToInsertRatio(samplesPerInsert: Double, minSizeToSample: Int,
                                           minDiff: Double, maxDiff: Double) throws(ReplayError) -> RateLimiterConfig {
        try sampleToInsertRatio(samplesPerInsert: samplesPerInsert, minSizeToSample: minSizeToSample,
                                minDiff: minDiff, maxDiff: maxDiff,
                                errorBufferDescription: "error buffer range [\(minDiff), \(maxDiff)]")
    }

    private static func sampleToInsertRatio(samplesPerInsert: Double, minSizeToSample: Int, minDiff: Double, maxDiff: Double,
                                            errorBufferDescription: String) throws(ReplayError) -> RateLimiterConfig {
        guard samplesPerInsert.isFinite && samplesPerInsert > 0 else {
            throw ReplayError(.invalidArgument, "sampleToInsertRatio: samplesPerInsert \(samplesPerInsert) must be finite and > 0")
        }
        let needed = 2 * Swift.max(1, samplesPerInsert)
        guard maxDiff - minDiff >= needed else {
            throw ReplayError(.invalidArgument,
                              "sampleToInsertRatio: \(errorBufferDescription) spans \(maxDiff - minDiff), expected at least 2 * max(1, samplesPerInsert) = \(needed) (samplesPerInsert \(samplesPerInsert)); a smaller buffer can block inserts and samples for ever")
        }
        let offset = samplesPerInsert * Double(minSizeToSample)
        guard minDiff <= offset else {
            throw ReplayError(.invalidArgument,
                              "sampleToInsertRatio: minDiff \(minDiff) is above samplesPerInsert * minSizeToSample = \(offset); samples could never start")
        }
        return try RateLimiterConfig(samplesPerInsert: samplesPerInsert, minSizeToSample: minSizeToSample,
                                     minDiff: minDiff, maxDiff: maxDiff)
    }

    /// The limiter of a queue table of `size` items: one sample per insert, an insert
    /// blocks while `size` items wait, a sample blocks while the queue is empty.
    public static func queue(size: Int) throws(ReplayError) -> RateLimiterConfig {
        guard size >= 1 else { throw ReplayError(.invalidArgument, "queue: size \(size) must be >= 1") }
        return try RateLimiterConfig(samplesPerInsert: 1, minSizeToSample: 1, minDiff: 0, maxDiff: Double(size))
    }

    /// The limiter of a stack table of `size` items (the same rule as `queue`).
    public static func stack(size: Int) throws(ReplayError) -> RateLimiterConfig {
        guard size >= 1 else { throw ReplayError(.invalidArgument, "stack: size \(size) must be >= 1") }
        return try RateLimiterConfig(samplesPerInsert: 1, minSizeToSample: 1, minDiff: 0, maxDiff: Double(size))
    }

    public var description: String {
        "RateLimiter(samplesPerInsert: \(samplesPerInsert), minSizeToSample: \(minSizeToSample), minDiff: \(minDiff), maxDiff: \(maxDiff))"
    }
}
