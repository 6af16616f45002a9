#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Selects item `i` with probability `p_i^e / sum_j p_j^e` (Schaul et al. 2016, prioritized
/// experience replay), where `p_i` is the item's priority and `e` the priority exponent.
///
/// Storage is a sum-tree: a complete binary tree over a power-of-two array of leaves, one
/// leaf per item (slots `0..<count`, unused leaves 0); each inner node holds the sum of its
/// two children, recomputed from them (never by adding deltas), so no rounding drift builds
/// up. Complexity: insert, update, delete (the last slot moves into the hole) and sample
/// O(log n); growth doubles the leaves (amortised O(1) per insert). When every weight is 0
/// the selector samples uniformly. Not thread-safe: see `ItemSelector`.
public final class PrioritizedSelector: ItemSelector {
    /// The exponent `e` applied to priorities.
    public let priorityExponent: Double
    /// `tree[1]` is the root; leaves are `tree[capacity ..< 2 * capacity]`.
    private(set) var tree: [Double]
    private(set) var capacity: Int
    private var slotKeys: [UInt64] = []
    private var slotOf: [UInt64: Int] = [:]

    /// An empty selector with priority exponent `priorityExponent` (finite, >= 0).
    public init(priorityExponent: Double) {
        precondition(priorityExponent.isFinite && priorityExponent >= 0,
                     "PrioritizedSelector: priority exponent \(priorityExponent) must be finite and >= 0")
        self.priorityExponent = priorityExponent
        capacity = 16
        tree = [Double](repeating: 0, count: 2 * capacity)
    }

    public var count: Int { slotKeys.count }

    /// Sum of all weights `p^e`.
    public var totalWeight: Double { tree[1] }

    @inline(__always)
    private func weight(_ priority: Double) -> Double {
        priorityExponent == 1 ? priority : pow(priority, priorityExponent)
    }

    /// The probability that `sample` picks `key` (nil if absent).
    public func probability(of key: UInt64) -> Double? {
        guard let s = slotOf[key] else { return nil }
        let total = tree[1]
        return total > 0 ? tree[capacity + s] / total : 1 / Double(count)
    }

    private func setLeaf(_ slot: Int, _ w: Double) {
        tree.withUnsafeMutableBufferPointer { t in
            var n = capacity + slot
            t[n] = w
            n >>= 1
            while n >= 1 {
                t[n] = t[2 * n] + t[2 * n + 1]
                n >>= 1
            }
        }
    }

    private func grow() {
        let newCapacity = capacity * 2
        var t = [Double](repeating: 0, count: 2 * newCapacity)
        for i in 0..<slotKeys.count { t[newCapacity + i] = tree[capacity + i] }
        var n = newCapacity - 1
        while n >= 1 { t[n] = t[2 * n] + t[2 * n + 1]; n -= 1 }
        tree = t
        capacity = newCapacity
    }

    public func insert(key: UInt64, priority: Double) {
        precondition(slotOf[key] == nil, "PrioritizedSelector.insert: key \(key) already present")
        if slotKeys.count == capacity { grow() }
        let s = slotKeys.count
        slotKeys.append(key)
        slotOf[key] = s
        setLeaf(s, weight(priority))
    }

    public func update(key: UInt64, priority: Double) {
        guard let s = slotOf[key] else { preconditionFailure("PrioritizedSelector.update: key \(key) not present") }
        setLeaf(s, weight(priority))
    }

    public func delete(key: UInt64) {
        guard let s = slotOf.removeValue(forKey: key) else { preconditionFailure("PrioritizedSelector.delete: key \(key) not present") }
        let last = slotKeys.count - 1
        if s != last {
            let moved = slotKeys[last]
            slotKeys[s] = moved
            slotOf[moved] = s
            setLeaf(s, tree[capacity + last])
        }
        setLeaf(last, 0)
        slotKeys.removeLast()
    }

    public func sample(_ rng: inout ReplayRandom) -> SelectedKey {
        let n = slotKeys.count
        precondition(n > 0, "PrioritizedSelector.sample: no items")
        let total = tree[1]
        guard total > 0, total.isFinite else {
            return SelectedKey(key: slotKeys[rng.nextInt(below: n)], probability: 1 / Double(n))
        }
        var u = rng.nextDouble() * total
        let leaf: Int = tree.withUnsafeBufferPointer { t in
            var node = 1
            while node < capacity {
                let left = t[2 * node]
                // Go right only into a subtree with weight, so rounding never lands on an
                // empty leaf.
                if u >= left && t[2 * node + 1] > 0 {
                    u -= left
                    node = 2 * node + 1
                } else {
                    node = 2 * node
                }
            }
            return node - capacity
        }
        return SelectedKey(key: slotKeys[leaf], probability: tree[capacity + leaf] / total)
    }

    public func clear() {
        slotKeys.removeAll()
        slotOf.removeAll()
        capacity = 16
        tree = [Double](repeating: 0, count: 2 * capacity)
    }

    public func orderedKeys() -> [UInt64] { slotKeys }

    /// Checks the sum-tree invariants: every inner node equals the sum of its children,
    /// unused leaves are 0, and the key/slot maps agree. Returns the first violation found.
    func invariantViolation() -> String? {
        for n in 1..<capacity where tree[n] != tree[2 * n] + tree[2 * n + 1] {
            return "node \(n) holds \(tree[n]), children sum to \(tree[2 * n] + tree[2 * n + 1])"
        }
        for s in slotKeys.count..<capacity where tree[capacity + s] != 0 {
            return "unused leaf \(s) holds \(tree[capacity + s])"
        }
        if slotOf.count != slotKeys.count { return "\(slotOf.count) keys mapped, \(slotKeys.count) slots used" }
        for (s, k) in slotKeys.enumerated() where slotOf[k] != s {
            return "key \(k) in slot \(s) maps to slot \(String(describing: slotOf[k]))"
        }
        return nil
    }

    /// The weight stored for `key` (nil if absent); for tests.
    func leafWeight(_ key: UInt64) -> Double? { slotOf[key].map { tree[capacity + $0] } }
}
