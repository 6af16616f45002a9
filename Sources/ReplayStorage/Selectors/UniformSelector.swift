/// Selects every item with equal probability 1/n; ignores priorities.
///
/// Complexity: insert, delete (swap with the last slot) and sample O(1).
/// Not thread-safe: see `ItemSelector`.
public final class UniformSelector: ItemSelector {
    private var keys: [UInt64] = []
    private var slotOf: [UInt64: Int] = [:]

    /// An empty uniform selector.
    public init() {}

    public var count: Int { keys.count }

    public func insert(key: UInt64, priority: Double) {
        precondition(slotOf[key] == nil, "UniformSelector.insert: key \(key) already present")
        slotOf[key] = keys.count
        keys.append(key)
    }

    public func update(key: UInt64, priority: Double) {}

    public func delete(key: UInt64) {
        guard let s = slotOf.removeValue(forKey: key) else { preconditionFailure("UniformSelector.delete: key \(key) not present") }
        let last = keys.removeLast()
        if s < keys.count {
            keys[s] = last
            slotOf[last] = s
        }
    }

    public func sample(_ rng: inout ReplayRandom) -> SelectedKey {
        precondition(!keys.isEmpty, "UniformSelector.sample: no items")
        return SelectedKey(key: keys[rng.nextInt(below: keys.count)], probability: 1 / Double(keys.count))
    }

    public func clear() { keys.removeAll(); slotOf.removeAll() }
    public func orderedKeys() -> [UInt64] { keys }
}
