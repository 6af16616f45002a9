import Foundation
import Collectives

/// How the flattened parameters are split among ranks for a sharded weight update: a
/// plan built by a pure function, validated, with a text form.
///
/// The parameters are concatenated in registration order into one flat vector of
/// `total` elements; rank `r` owns the contiguous range `ranges[r]`, with near-equal
/// sizes (`shardCounts`: the first `total % size` ranks hold one element more). Shards
/// cut through parameters freely: `pieces(of:)` lists, for a rank, which parameter
/// elements it owns. This is the partition of ZeRO (Rajbhandari et al. 2020, sec. 5) and
/// of Xu et al. 2020 ("Automatic Cross-Replica Sharding of Weight Update", sec. 3): each
/// replica updates and keeps optimizer state only for its 1/N of the weights.
///
/// Text form:
/// ```
/// shards 2 params 3 total 11
/// rank 0 0..<6
/// rank 1 6..<11
/// ```
/// Building is O(parameters + ranks); `pieces(of:)` is O(parameters).
public struct ShardMap: Equatable, Sendable, CustomStringConvertible {
    /// Element count of each parameter, registration order.
    public let parameterCounts: [Int]
    /// Start of each parameter in the flat vector.
    public let parameterOffsets: [Int]
    /// The flat range each rank owns, in rank order; together they tile `0..<total`.
    public let ranges: [Range<Int>]

    /// One contiguous piece of a parameter owned by a rank.
    public struct Piece: Equatable, Sendable {
        /// Parameter index.
        public var parameter: Int
        /// Elements of the (flattened) parameter in this piece.
        public var elements: Range<Int>
        /// Where the piece starts inside the rank's shard.
        public var shardOffset: Int
    }

    /// Shards parameters of `parameterCounts` elements over `size` ranks.
    /// Throws when `size < 1` or a count is negative.
    public init(parameterCounts: [Int], size: Int) throws(DataParallelError) {
        guard size >= 1 else { throw DataParallelError("shard map: world size \(size); expected >= 1") }
        for (i, c) in parameterCounts.enumerated() where c < 0 {
            throw DataParallelError("shard map: parameter \(i) has \(c) elements; expected >= 0")
        }
        self.parameterCounts = parameterCounts
        self.parameterOffsets = shardOffsets(parameterCounts)
        let total = parameterCounts.reduce(0, +)
        let counts = shardCounts(total: total, parts: size)
        let starts = shardOffsets(counts)
        self.ranges = (0..<size).map { starts[$0]..<(starts[$0] + counts[$0]) }
    }

    /// A map with explicit ranges (e.g. parsed); validated.
    public init(parameterCounts: [Int], ranges: [Range<Int>]) throws(DataParallelError) {
        self.parameterCounts = parameterCounts
        self.parameterOffsets = shardOffsets(parameterCounts)
        self.ranges = ranges
        try validate()
    }

    /// Total elements.
    public var total: Int { parameterCounts.reduce(0, +) }
    /// Number of ranks.
    public var size: Int { ranges.count }
    /// Elements owned by each rank (the `counts` of reduce-scatter / all-gather).
    public var counts: [Int] { ranges.map(\.count) }

    /// Checks that the ranges tile `0..<total` in rank order and counts are non-negative.
    public func validate() throws(DataParallelError) {
        guard !ranges.isEmpty else { throw DataParallelError("shard map: no ranks; expected >= 1") }
        for (i, c) in parameterCounts.enumerated() where c < 0 {
            throw DataParallelError("shard map: parameter \(i) has \(c) elements; expected >= 0")
        }
        var at = 0
        for (r, range) in ranges.enumerated() {
            guard range.lowerBound == at else {
                throw DataParallelError("shard map: rank \(r) starts at \(range.lowerBound); expected \(at) (ranges must tile the flat parameters in rank order)")
            }
            at = range.upperBound
        }
        guard at == total else { throw DataParallelError("shard map: ranges end at \(at); expected the total \(total)") }
    }

    /// The parameter pieces inside the flat range `range`, in flat order, with offsets
    /// relative to `range.lowerBound`.
    public func pieces(in range: Range<Int>) -> [Piece] {
        var out: [Piece] = []
        for (p, count) in parameterCounts.enumerated() where count > 0 {
            let lo = max(parameterOffsets[p], range.lowerBound), hi = min(parameterOffsets[p] + count, range.upperBound)
            if lo < hi {
                out.append(Piece(parameter: p, elements: (lo - parameterOffsets[p])..<(hi - parameterOffsets[p]),
                                 shardOffset: lo - range.lowerBound))
            }
        }
        return out
    }

    /// The pieces rank `rank` owns.
    public func pieces(of rank: Int) -> [Piece] { pieces(in: ranges[rank]) }

    /// For a flat range (e.g. a gradient bucket), how many of its elements each rank owns:
    /// the per-rank counts of a reduce-scatter over that range.
    public func counts(within range: Range<Int>) -> [Int] {
        ranges.map { max(0, min($0.upperBound, range.upperBound) - max($0.lowerBound, range.lowerBound)) }
    }

    /// The text form: a header, then one line per rank.
    public var description: String {
        (["shards \(size) params \(parameterCounts.count) total \(total)"]
            + ranges.enumerated().map { "rank \($0.offset) \($0.element.lowerBound)..<\($0.element.upperBound)" })
            .joined(separator: "\n")
    }

    /// Parses the text form (with the parameter counts, which it does not carry); validated.
    public init(parsing text: String, parameterCounts: [Int]) throws(DataParallelError) {
        let lines = text.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        guard let h = lines.first, h.count == 6, h[0] == "shards", h[2] == "params", h[4] == "total",
              let n = Int(h[1]), let p = Int(h[3]), let t = Int(h[5]) else {
            throw DataParallelError("shard map text, line 1: expected 'shards N params P total T', found '\(lines.first?.joined(separator: " ") ?? "")'")
        }
        guard p == parameterCounts.count, t == parameterCounts.reduce(0, +) else {
            throw DataParallelError("shard map text: \(p) parameters, \(t) elements; expected \(parameterCounts.count) parameters, \(parameterCounts.reduce(0, +)) elements")
        }
        guard lines.count == n + 1 else { throw DataParallelError("shard map text: \(lines.count - 1) rank lines; the header says \(n)") }
        var ranges: [Range<Int>] = []
        for (r, f) in lines.dropFirst().enumerated() {
            let bounds = f.count == 3 ? f[2].components(separatedBy: "..<") : []
            guard f.count == 3, f[0] == "rank", Int(f[1]) == r, bounds.count == 2,
                  let lo = Int(bounds[0]), let hi = Int(bounds[1]), lo <= hi else {
                throw DataParallelError("shard map text, line \(r + 2): expected 'rank \(r) LO..<HI', found '\(f.joined(separator: " "))'")
            }
            ranges.append(lo..<hi)
        }
        try self.init(parameterCounts: parameterCounts, ranges: ranges)
    }
}
