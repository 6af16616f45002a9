/// A key chosen by a selector, with the probability that it was the one chosen.
public struct SelectedKey: Sendable, Equatable {
    /// The item key.
    public var key: UInt64
    /// The probability of this choice given the selector's state (1 for deterministic selectors).
    public var probability: Double

    /// A selected key with its probability.
    public init(key: UInt64, probability: Double) {
        self.key = key
        self.probability = probability
    }
}

/// A strategy that picks item keys: used by a table as its sampler and as its remover.
///
/// Concurrency contract: a selector is not thread-safe and need not be. The table that
/// owns it calls it only while holding the table's lock, so calls are serialised; a
/// selector must not call back into the table or block.
///
/// Preconditions the table guarantees (violations trap): `insert` is never called with a
/// key already present, `update` and `delete` only with present keys, `sample` only when
/// `count > 0`, and priorities are finite and non-negative.
public protocol ItemSelector: AnyObject {
    /// Number of keys held.
    var count: Int { get }
    /// Adds `key` with `priority`.
    func insert(key: UInt64, priority: Double)
    /// Changes the priority of `key` (a no-op for selectors that ignore priorities).
    func update(key: UInt64, priority: Double)
    /// Removes `key`.
    func delete(key: UInt64)
    /// Picks a key (does not remove it) and reports the probability of that pick.
    func sample(_ rng: inout ReplayRandom) -> SelectedKey
    /// Removes every key.
    func clear()
    /// The keys in an order such that inserting them, with their priorities, into an empty
    /// selector of the same kind reproduces this selector's behaviour (used by checkpoints).
    func orderedKeys() -> [UInt64]
}

/// Which selector a table uses as sampler or remover; a Codable value for table configs.
///
/// Encoded as `{"kind": "fifo"}` or `{"kind": "prioritized", "priorityExponent": 0.8}`.
public enum SelectorConfig: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Oldest item first.
    case fifo
    /// Newest item first.
    case lifo
    /// Every item equally likely.
    case uniform
    /// Item `i` with probability `priority_i^e / sum_j priority_j^e`.
    case prioritized(priorityExponent: Double)
    /// The item with the largest priority (ties: the earliest inserted).
    case maxHeap
    /// The item with the smallest priority (ties: the earliest inserted).
    case minHeap

    /// A new empty selector of this kind.
    public func makeSelector() -> any ItemSelector {
        switch self {
        case .fifo: return FIFOSelector()
        case .lifo: return LIFOSelector()
        case .uniform: return UniformSelector()
        case .prioritized(let e): return PrioritizedSelector(priorityExponent: e)
        case .maxHeap: return MaxHeapSelector()
        case .minHeap: return MinHeapSelector()
        }
    }

    /// Throws when a parameter is out of range (a negative or non-finite priority exponent).
    public func validate() throws(ReplayError) {
        if case .prioritized(let e) = self, !(e.isFinite && e >= 0) {
            throw ReplayError(.invalidArgument, "prioritized selector: priority exponent \(e) must be finite and >= 0")
        }
    }

    /// The kind name used in configs: fifo, lifo, uniform, prioritized, maxHeap, minHeap.
    public var kind: String {
        switch self {
        case .fifo: return "fifo"
        case .lifo: return "lifo"
        case .uniform: return "uniform"
        case .prioritized: return "prioritized"
        case .maxHeap: return "maxHeap"
        case .minHeap: return "minHeap"
        }
    }

    public var description: String {
        if case .prioritized(let e) = self { return "prioritized(priorityExponent: \(e))" }
        return kind
    }

    enum CodingKeys: String, CodingKey { case kind, priorityExponent }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try c.decode(String.self, forKey: .kind)
        switch kind {
        case "fifo": self = .fifo
        case "lifo": self = .lifo
        case "uniform": self = .uniform
        case "maxHeap": self = .maxHeap
        case "minHeap": self = .minHeap
        case "prioritized":
            guard let e = try c.decodeIfPresent(Double.self, forKey: .priorityExponent) else {
                throw ReplayError(.invalidArgument, "selector 'prioritized' needs a priorityExponent")
            }
            self = .prioritized(priorityExponent: e)
        default:
            throw ReplayError(.invalidArgument,
                              "unknown selector kind '\(kind)' (expected fifo, lifo, uniform, prioritized, maxHeap or minHeap)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .kind)
        if case .prioritized(let e) = self { try c.encode(e, forKey: .priorityExponent) }
    }
}
