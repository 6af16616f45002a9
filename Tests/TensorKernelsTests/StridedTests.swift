import XCTest
import TensorKernels

final class StridedTests: XCTestCase {
    func testCoalesceMergesContiguousDims() {
        let r = coalesceDimensions(shape: [2, 3, 4], strides: [[12, 4, 1]])
        XCTAssertEqual(r.shape, [24])
        XCTAssertEqual(r.strides, [[1]])
        let t = coalesceDimensions(shape: [2, 3, 4], strides: [[1, 8, 2]])
        XCTAssertEqual(t.shape, [2, 12])
        XCTAssertEqual(t.strides, [[1, 2]])
        let z = coalesceDimensions(shape: [2, 0, 4], strides: [[0, 4, 1]])
        XCTAssertEqual(z.shape, [0])
    }

    func testRowsVisitEveryElementInRowMajorOrder() {
        // A transposed 3x5 view over a 5x3 buffer; compare with a naive index walk.
        for (shape, strides) in [([3, 5], [1, 3]), ([2, 1, 3], [3, 99, 1]), ([4], [2]), ([], []), ([1, 1], [7, 7]), ([2, 3, 2], [1, 4, 2])] {
            var visited: [Int] = []
            forEachStridedRow(shape: shape, strides: [strides], offsets: [0]) { offs, n, inner in
                for i in 0..<n { visited.append(offs[0] + i * inner[0]) }
            }
            var expected: [Int] = []
            let count = elementCount(shape)
            for linear in 0..<count {
                var rem = linear, off = 0
                for d in stride(from: shape.count - 1, through: 0, by: -1) {
                    off += (rem % shape[d]) * strides[d]
                    rem /= shape[d]
                }
                expected.append(off)
            }
            XCTAssertEqual(visited, expected, "shape \(shape) strides \(strides)")
        }
    }

    func testEmptyShapeVisitsNothing() {
        var calls = 0
        forEachStridedRow(shape: [3, 0, 2], strides: [[0, 2, 1]], offsets: [0]) { _, _, _ in calls += 1 }
        XCTAssertEqual(calls, 0)
    }
}
