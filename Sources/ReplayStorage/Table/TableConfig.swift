/// The configuration of one table; a Codable value (the service reads it from YAML/JSON).
///
/// Keys: `name`, `sampler`, `remover` (`{"kind": ...}`, see `SelectorConfig`), `maxSize`,
/// `maxTimesSampled` (0 = unlimited; default 0), `rateLimiter` (see `RateLimiterConfig`),
/// `signature` (optional list of `{name, dtype, shape}`) and `seed` (sampling RNG; default 0).
public struct TableConfig: Codable, Sendable, Equatable {
    /// Table name (unique in a server).
    public var name: String
    /// Picks items to sample.
    public var sampler: SelectorConfig
    /// Picks the item to evict when an insert finds the table full.
    public var remover: SelectorConfig
    /// Maximum number of items (>= 1).
    public var maxSize: Int
    /// An item is removed after this many samples; 0 means never.
    public var maxTimesSampled: Int
    /// The rate limiter.
    public var rateLimiter: RateLimiterConfig
    /// Columns every chunk must match, if set.
    public var signature: [ColumnSpec]?
    /// Seed of the table's sampling generator.
    public var seed: UInt64

    /// A table config (call `validate()` or create a table to check it).
    public init(name: String, sampler: SelectorConfig, remover: SelectorConfig, maxSize: Int,
                maxTimesSampled: Int = 0, rateLimiter: RateLimiterConfig, signature: [ColumnSpec]? = nil, seed: UInt64 = 0) {
        self.name = name
        self.sampler = sampler
        self.remover = remover
        self.maxSize = maxSize
        self.maxTimesSampled = maxTimesSampled
        self.rateLimiter = rateLimiter
        self.signature = signature
        self.seed = seed
    }

    /// A FIFO queue of `maxSize` items, each sampled once (Reverb's `Table.queue`).
    public static func queue(name: String, maxSize: Int, signature: [ColumnSpec]? = nil) throws(ReplayError) -> TableConfig {
        TableConfig(name: name, sampler: .fifo, remover: .fifo, maxSize: maxSize, maxTimesSampled: 1,
                    rateLimiter: try .queue(size: maxSize), signature: signature)
    }

    /// A LIFO stack of `maxSize` items, each sampled once (Reverb's `Table.stack`).
    public static func stack(name: String, maxSize: Int, signature: [ColumnSpec]? = nil) throws(ReplayError) -> TableConfig {
        TableConfig(name: name, sampler: .lifo, remover: .lifo, maxSize: maxSize, maxTimesSampled: 1,
                    rateLimiter: try .stack(size: maxSize), signature: signature)
    }

    /// Throws when a value is out of range: empty name, `maxSize < 1`,
    /// `maxTimesSampled < 0`, a bad selector, rate limiter or signature.
    public func validate() throws(ReplayError) {
        guard !name.isEmpty else { throw ReplayError(.invalidArgument, "table name must not be empty") }
        guard maxSize >= 1 else { throw ReplayError(.invalidArgument, "table '\(name)': maxSize \(maxSize) must be >= 1") }
        guard maxTimesSampled >= 0 else {
            throw ReplayError(.invalidArgument, "table '\(name)': maxTimesSampled \(maxTimesSampled) must be >= 0 (0 = unlimited)")
        }
        do throws(ReplayError) {
            try sampler.validate()
            try remover.validate()
            try rateLimiter.validate()
        } catch {
            throw ReplayError(error.kind, "table '\(name)': \(error.message)")
        }
        try signature?.validateSignature(table: name)
    }

    /// Human-readable differences from `other` ("max size: 100 vs 200"), empty when equal
    /// (the seed is ignored: it only seeds a fresh table).
    public func differences(from other: TableConfig) -> [String] {
        var d: [String] = []
        func cmp<T: Equatable>(_ what: String, _ a: T, _ b: T) { if a != b { d.append("\(what) \(a) vs \(b)") } }
        cmp("name", name, other.name)
        cmp("sampler", sampler.description, other.sampler.description)
        cmp("remover", remover.description, other.remover.description)
        cmp("max size", maxSize, other.maxSize)
        cmp("max times sampled", maxTimesSampled, other.maxTimesSampled)
        cmp("rate limiter", rateLimiter.description, other.rateLimiter.description)
        cmp("signature", signature.map { "\($0)" } ?? "none", other.signature.map { "\($0)" } ?? "none")
        return d
    }

    enum CodingKeys: String, CodingKey { case name, sampler, remover, maxSize, maxTimesSampled, rateLimiter, signature, seed }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        sampler = try c.decode(SelectorConfig.self, forKey: .sampler)
        remover = try c.decode(SelectorConfig.self, forKey: .remover)
        maxSize = try c.decode(Int.self, forKey: .maxSize)
        maxTimesSampled = try c.decodeIfPresent(Int.self, forKey: .maxTimesSampled) ?? 0
        rateLimiter = try c.decode(RateLimiterConfig.self, forKey: .rateLimiter)
        signature = try c.decodeIfPresent([ColumnSpec].self, forKey: .signature)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? 0
    }
}
