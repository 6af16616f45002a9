import XCTest
@testable import ReplayStorage

final class LIFOSelectorTests: XCTestCase {
    func testSamplesTheNewestKeyAfterRandomOperations() {
        let s = LIFOSelector()
        var rng = ReplayRandom(seed: 1)
        randomOperations(s, seed: 12, steps: 2000) { model in
            XCTAssertEqual(s.orderedKeys(), model.keys)
            if let last = model.items.last {
                XCTAssertEqual(s.sample(&rng), SelectedKey(key: last.key, probability: 1))
            }
        }
    }

    func testDeletingTheNewestExposesThePrevious() {
        let s = LIFOSelector()
        for k: UInt64 in 1...4 { s.insert(key: k, priority: Double(k)) }
        var rng = ReplayRandom(seed: 0)
        XCTAssertEqual(s.sample(&rng).key, 4)
        s.delete(key: 4)
        s.delete(key: 2)
        XCTAssertEqual(s.sample(&rng).key, 3)
        s.delete(key: 3)
        XCTAssertEqual(s.sample(&rng).key, 1)
    }
}
