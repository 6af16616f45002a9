import XCTest
@testable import ReplayStorage

/// A naive model of all selectors: items in insertion order with priorities.
struct NaiveSelectorModel {
    var items: [(key: UInt64, priority: Double)] = []

    mutating func insert(_ k: UInt64, _ p: Double) { items.append((k, p)) }
    mutating func update(_ k: UInt64, _ p: Double) { items[items.firstIndex { $0.key == k }!].priority = p }
    mutating func delete(_ k: UInt64) { items.remove(at: items.firstIndex { $0.key == k }!) }
    var keys: [UInt64] { items.map(\.key) }
    /// Max (or min) priority, ties to the earliest inserted.
    func heapTop(max: Bool) -> UInt64 {
        var best = items[0]
        for it in items.dropFirst() where max ? it.priority > best.priority : it.priority < best.priority { best = it }
        return best.key
    }
}

/// Applies the same random insert/update/delete sequence to `selector` and the model,
/// calling `check` after every step.
func randomOperations(_ selector: any ItemSelector, seed: UInt64, steps: Int, integerPriorities: Bool = false,
                      check: (NaiveSelectorModel) -> Void) {
    var rng = ReplayRandom(seed: seed)
    var model = NaiveSelectorModel()
    var nextKey: UInt64 = 100
    func priority() -> Double { integerPriorities ? Double(rng.nextInt(below: 4)) : rng.nextDouble() * 10 }
    for _ in 0..<steps {
        let op = rng.nextInt(below: 10)
        if model.items.isEmpty || op < 5 {
            let p = priority()
            selector.insert(key: nextKey, priority: p)
            model.insert(nextKey, p)
            nextKey += 1
        } else if op < 8 {
            let k = model.items[rng.nextInt(below: model.items.count)].key
            let p = priority()
            selector.update(key: k, priority: p)
            model.update(k, p)
        } else {
            let k = model.items[rng.nextInt(below: model.items.count)].key
            selector.delete(key: k)
            model.delete(k)
        }
        XCTAssertEqual(selector.count, model.items.count)
        check(model)
    }
}
