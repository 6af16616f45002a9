/// Selects the oldest item (first in, first out); ignores priorities.
///
/// Complexity: insert, delete and sample O(1) (a linked list over arrays plus a hash map).
/// Sample probability is 1. Not thread-safe: see `ItemSelector`.
public final class FIFOSelector: ItemSelector {
    private var list = KeyList()

    /// An empty FIFO selector.
    public init() {}

    public var count: Int { list.count }
    public func insert(key: UInt64, priority: Double) { list.append(key) }
    public func update(key: UInt64, priority: Double) {}
    public func delete(key: UInt64) { list.remove(key) }
    public func sample(_ rng: inout ReplayRandom) -> SelectedKey {
        guard let k = list.first else { preconditionFailure("FIFOSelector.sample: no items") }
        return SelectedKey(key: k, probability: 1)
    }
    public func clear() { list.removeAll() }
    public func orderedKeys() -> [UInt64] { list.ordered() }
}
