import Foundation
import TensorCore

/// Which layers of a `Sequential` run under gradient checkpointing: a partition of the
/// layers into consecutive segments, each either stored (ordinary autograd) or recomputed
/// (its intermediates are dropped after the forward pass and rebuilt in backward).
///
/// Text form (`description`): segments in order, `r` recomputed / `s` stored, e.g.
/// `r[0..<4] r[4..<8] s[8..<10]`.
public struct CheckpointPlan: Sendable, Equatable, CustomStringConvertible {
    /// One segment of consecutive layers.
    public struct Segment: Sendable, Equatable {
        public var range: Range<Int>
        public var recompute: Bool
        public init(_ range: Range<Int>, recompute: Bool) {
            self.range = range
            self.recompute = recompute
        }
    }

    public let segments: [Segment]
    /// Number of layers covered.
    public var layerCount: Int { segments.last?.range.upperBound ?? 0 }
    /// Number of recomputed segments.
    public var recomputedSegments: Int { segments.filter(\.recompute).count }

    /// A plan from its segments; they must be non-empty, consecutive and start at layer 0.
    public init(segments: [Segment]) throws(CheckpointPlanError) {
        var next = 0
        for s in segments {
            guard s.range.lowerBound == next, !s.range.isEmpty else {
                throw CheckpointPlanError("checkpoint plan: segment \(s.range) does not start at layer \(next) or is empty; segments must be consecutive and non-empty")
            }
            next = s.range.upperBound
        }
        self.segments = segments
    }

    /// Every layer stored: ordinary training.
    public static func none(layers: Int) -> CheckpointPlan {
        try! CheckpointPlan(segments: layers == 0 ? [] : [Segment(0..<layers, recompute: false)])
    }

    public var description: String {
        segments.map { "\($0.recompute ? "r" : "s")[\($0.range.lowerBound)..<\($0.range.upperBound)]" }.joined(separator: " ")
    }
}

/// A plan that cannot be built or does not fit; the message names the value and the limit.
public struct CheckpointPlanError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// How to choose checkpoints for a sequential model.
public enum CheckpointPolicy: Sendable, Equatable, CustomStringConvertible {
    /// No checkpointing.
    case none
    /// Chen et al.'s sqrt(n) rule: segments of ceil(sqrt(n)) layers, all but the last recomputed.
    case sqrt
    /// The least recompute (by measured forward time) whose planned activation peak fits `bytes`.
    case budget(bytes: Int)

    /// Parses `none`, `sqrt` or `budget:BYTES` (BYTES may end in K, M or G, binary units).
    public init(parsing text: String) throws(CheckpointPlanError) {
        switch text {
        case "none": self = .none
        case "sqrt": self = .sqrt
        default:
            guard text.hasPrefix("budget:"), let bytes = parseByteCount(String(text.dropFirst(7))), bytes > 0 else {
                throw CheckpointPlanError("--checkpoint '\(text)': expected none, sqrt or budget:BYTES (e.g. budget:64M)")
            }
            self = .budget(bytes: bytes)
        }
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .sqrt: return "sqrt"
        case .budget(let b): return "budget:\(b)"
        }
    }
}

/// Parses a byte count: digits with an optional K, M or G suffix (powers of 1024).
public func parseByteCount(_ text: String) -> Int? {
    var t = text.trimmingCharacters(in: .whitespaces).uppercased()
    if t.hasSuffix("IB") { t.removeLast(2) } else if t.hasSuffix("B") { t.removeLast() }
    var mult = 1
    if let last = t.last, let m = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30][String(last)] {
        mult = m
        t.removeLast()
    }
    guard let v = Double(t), v >= 0, v.isFinite else { return nil }
    return Int(v * Double(mult))
}

/// What one layer of a sequential model costs, measured on one forward pass.
public struct LayerCost: Sendable, Equatable {
    /// Bytes the layer's forward leaves alive when recording (its output plus what its
    /// backward keeps).
    public var savedBytes: Int
    /// Bytes of the layer's output (what a checkpoint boundary after it keeps).
    public var outputBytes: Int
    /// Forward time (seconds) or any cost proportional to it.
    public var forwardCost: Double

    public init(savedBytes: Int, outputBytes: Int, forwardCost: Double) {
        self.savedBytes = savedBytes
        self.outputBytes = outputBytes
        self.forwardCost = forwardCost
    }
}

/// Chooses checkpoint plans and predicts their activation memory and recompute cost.
///
/// Memory model (activations only; parameters, gradients and optimizer state are not
/// affected by checkpointing). After the forward pass a stored segment keeps the saved
/// bytes of its layers and a recomputed one keeps only its output (the next segment's
/// input). Backward visits segments last to first, freeing each after its gradients are
/// done; recomputing segment k adds its internal bytes (saved bytes minus its output) on
/// top of what segments 0...k keep. So the planned peak is
///   max(total kept, max over recomputed k of (kept by segments 0...k + internal(k))).
/// Recompute cost is the forward cost of the recomputed layers (one extra forward each).
public enum CheckpointPlanner {
    /// The plan `policy` gives for layers with these costs.
    public static func plan(_ costs: [LayerCost], policy: CheckpointPolicy) throws(CheckpointPlanError) -> CheckpointPlan {
        switch policy {
        case .none: return .none(layers: costs.count)
        case .sqrt: return sqrtPlan(layers: costs.count)
        case .budget(let bytes): return try budgetPlan(costs, budget: bytes)
        }
    }

    /// Chen's rule: segments of ceil(sqrt(n)) layers; the last is stored (it is
    /// backpropagated right after the forward pass, so recomputing it saves nothing).
    public static func sqrtPlan(layers n: Int) -> CheckpointPlan {
        guard n > 0 else { return .none(layers: 0) }
        let k = Int(Double(n).squareRoot().rounded(.up))
        var segments: [CheckpointPlan.Segment] = []
        var start = 0
        while start < n {
            let end = Swift.min(start + k, n)
            segments.append(.init(start..<end, recompute: end < n))
            start = end
        }
        return try! CheckpointPlan(segments: segments)
    }

    /// Planned activation peak of `plan` (bytes), by the model above.
    public static func plannedPeak(_ plan: CheckpointPlan, costs: [LayerCost]) -> Int {
        var kept = 0, peak = 0
        for s in plan.segments {
            let saved = costs[s.range].reduce(0) { $0 + $1.savedBytes }
            let out = costs[s.range.upperBound - 1].outputBytes
            if s.recompute {
                kept += out
                peak = Swift.max(peak, kept + Swift.max(saved - out, 0))
            } else {
                kept += saved
            }
        }
        return Swift.max(peak, kept)
    }

    /// Forward cost of the recomputed layers.
    public static func recomputeCost(_ plan: CheckpointPlan, costs: [LayerCost]) -> Double {
        plan.segments.filter(\.recompute).reduce(0) { acc, s in acc + costs[s.range].reduce(0) { $0 + $1.forwardCost } }
    }

    /// The smallest planned peak any plan reaches (within 1%), by bisection on the budget.
    public static func minimumPeak(_ costs: [LayerCost]) -> Int {
        var hi = plannedPeak(sqrtPlan(layers: costs.count), costs: costs)
        var lo = 0
        while hi - lo > Swift.max(1, hi / 100) {
            let mid = lo + (hi - lo) / 2
            if (try? budgetSearch(costs, budget: mid, units: 256)) != nil { hi = mid } else { lo = mid }
        }
        return hi
    }

    /// The plan of least recompute cost whose planned peak is at most `budget`.
    ///
    /// Dynamic programming over (layers done, bytes kept so far), with bytes rounded up
    /// to `units` steps of budget/units — rounding up only overestimates, so the plan
    /// found always fits. A segment [j, i) is either stored (one layer at a time: storing
    /// is additive) or recomputed. O(n² · units) time; n = 128 layers takes milliseconds.
    /// Throws, naming the budget and the smallest peak a plan can reach, when nothing fits.
    public static func budgetPlan(_ costs: [LayerCost], budget: Int, units: Int = 1024) throws(CheckpointPlanError) -> CheckpointPlan {
        guard let plan = try budgetSearch(costs, budget: budget, units: units) else {
            let floor = minimumPeak(costs)
            throw CheckpointPlanError("checkpoint budget \(formatBytes(budget)) (\(budget) bytes) is below what any plan reaches for these \(costs.count) layers; "
                                      + "the smallest planned peak is about \(formatBytes(floor)) (\(floor) bytes)")
        }
        return plan
    }

    /// The dynamic program of `budgetPlan`; nil when no plan fits.
    static func budgetSearch(_ costs: [LayerCost], budget: Int, units: Int) throws(CheckpointPlanError) -> CheckpointPlan? {
        let n = costs.count
        guard n > 0 else { return .none(layers: 0) }
        guard budget > 0 else { throw CheckpointPlanError("checkpoint budget \(budget) bytes: expected a positive byte count") }
        let unit = Swift.max(1, (budget + units - 1) / units)
        func q(_ bytes: Int) -> Int { (Swift.max(bytes, 0) + unit - 1) / unit }
        let cap = budget / unit
        var saved = [Int](repeating: 0, count: n + 1)  // prefix sums of savedBytes
        var fcost = [Double](repeating: 0, count: n + 1)
        for i in 0..<n {
            saved[i + 1] = saved[i] + costs[i].savedBytes
            fcost[i + 1] = fcost[i] + costs[i].forwardCost
        }
        let inf = Double.infinity
        // best[i][m]: least cost covering layers 0..<i with m units kept; back pointers.
        var best = [[Double]](repeating: [Double](repeating: inf, count: cap + 1), count: n + 1)
        var from = [[(j: Int, m: Int, recompute: Bool)]](repeating: [(j: Int, m: Int, recompute: Bool)](repeating: (-1, -1, false), count: cap + 1), count: n + 1)
        best[0][0] = 0
        for j in 0..<n {
            for m in 0...cap where best[j][m] < inf {
                let c0 = best[j][m]
                // Store layer j.
                let ms = m + q(costs[j].savedBytes)
                if ms <= cap, c0 < best[j + 1][ms] {
                    best[j + 1][ms] = c0
                    from[j + 1][ms] = (j, m, false)
                }
                // Recompute segment [j, i).
                for i in (j + 1)...n {
                    let out = costs[i - 1].outputBytes
                    let inner = Swift.max(saved[i] - saved[j] - out, 0)
                    let mr = m + q(out)
                    if mr + q(inner) > cap { break }  // inner only grows with i
                    let c = c0 + fcost[i] - fcost[j]
                    if c < best[i][mr] {
                        best[i][mr] = c
                        from[i][mr] = (j, m, true)
                    }
                }
            }
        }
        guard let (mEnd, _) = best[n].enumerated().filter({ $0.element < inf }).min(by: { $0.element < $1.element }) else {
            return nil
        }
        var segments: [CheckpointPlan.Segment] = []
        var i = n, m = mEnd
        while i > 0 {
            let p = from[i][m]
            segments.append(.init(p.j..<i, recompute: p.recompute))
            i = p.j
            m = p.m
        }
        // Merge neighbouring stored layers into one segment (same memory, fewer segments).
        var merged: [CheckpointPlan.Segment] = []
        for s in segments.reversed() {
            if !s.recompute, let last = merged.last, !last.recompute {
                merged[merged.count - 1].range = last.range.lowerBound..<s.range.upperBound
            } else {
                merged.append(s)
            }
        }
        return try CheckpointPlan(segments: merged)
    }
}
