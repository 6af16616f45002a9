import XCTest
import TensorCore

final class JoinsTests: XCTestCase {
    func t(_ values: [Double], _ shape: [Int]) -> Tensor { try! Tensor(values, shape: shape) }

    func testCatAlongEachDimMatchesHandComputed() {
        let a = t([1, 2, 3, 4, 5, 6], [2, 3])
        let b = t([7, 8, 9], [1, 3])
        let c0 = Tensor.cat([a, b])
        XCTAssertEqual(c0.shape, [3, 3])
        XCTAssertEqual(c0.doubles(), [1, 2, 3, 4, 5, 6, 7, 8, 9])
        let d = t([10, 20], [2, 1])
        let c1 = Tensor.cat([a, d, a], dim: -1)
        XCTAssertEqual(c1.shape, [2, 7])
        XCTAssertEqual(c1.doubles(), [1, 2, 3, 10, 1, 2, 3, 4, 5, 6, 20, 4, 5, 6])
    }

    func testCatNonContiguousEmptyAndOtherDTypes() {
        // Transposed (non-contiguous) input.
        let a = t([1, 2, 3, 4, 5, 6], [2, 3]).T          // [[1, 4], [2, 5], [3, 6]]
        XCTAssertFalse(a.isContiguous)
        let b = t([0, 0], [1, 2])
        XCTAssertEqual(Tensor.cat([a, b]).doubles(), [1, 4, 2, 5, 3, 6, 0, 0])
        // Tensors empty along dim are allowed and contribute nothing.
        let e = Tensor.zeros([0, 2], dtype: .float64)
        let c = Tensor.cat([e, b, e, a])
        XCTAssertEqual(c.shape, [4, 2])
        XCTAssertEqual(c.doubles(), [0, 0, 1, 4, 2, 5, 3, 6])
        XCTAssertEqual(Tensor.cat([e, e]).shape, [0, 2])
        // Empty in another dim: shape [2, 0] + [3, 0] -> [5, 0].
        XCTAssertEqual(Tensor.cat([Tensor.zeros([2, 0]), Tensor.zeros([3, 0])]).shape, [5, 0])
        // Integer and half dtypes keep their dtype and values.
        let i = Tensor.cat([Tensor([Int64(1), 2]), Tensor([Int64(3)])])
        XCTAssertEqual(i.dtype, .int64)
        XCTAssertEqual(i.scalars(as: Int64.self), [1, 2, 3])
        let h = Tensor.cat([Tensor.ones([2], dtype: .float16), Tensor.full([1], 0.5, dtype: .float16)])
        XCTAssertEqual(h.dtype, .float16)
        XCTAssertEqual(h.doubles(), [1, 1, 0.5])
        let bools = Tensor.cat([Tensor([true, false]), Tensor([true])])
        XCTAssertEqual(bools.scalars(as: Bool.self), [true, false, true])
    }

    func testCatShapeRuleErrorsNameIndexAndShapes() {
        XCTAssertEqual(try ShapeRules.cat([[2, 3], [4, 3]], dim: 0), [6, 3])
        XCTAssertEqual(try ShapeRules.cat([[2, 3], [2, 0], [2, 5]], dim: -1), [2, 8])
        XCTAssertThrowsError(try ShapeRules.cat([[2, 3], [2, 3], [3, 4]], dim: 0)) { e in
            let m = (e as! TensorError).description
            XCTAssertTrue(m.hasPrefix("cat:"), m)
            XCTAssertTrue(m.contains("tensor 2"), m)
            XCTAssertTrue(m.contains("[3, 4]") && m.contains("[2, 3]"), m)
            XCTAssertTrue(m.contains("dimension 0"), m)
        }
        XCTAssertThrowsError(try ShapeRules.cat([[2, 3], [2, 3, 1]], dim: 0)) { e in
            let m = (e as! TensorError).description
            XCTAssertTrue(m.contains("tensor 1") && m.contains("[2, 3, 1]") && m.contains("rank"), m)
        }
        XCTAssertThrowsError(try ShapeRules.cat([], dim: 0)) { e in
            XCTAssertEqual((e as! TensorError).kind, .argument)
        }
        XCTAssertThrowsError(try ShapeRules.cat([[2]], dim: 1)) { e in
            XCTAssertTrue((e as! TensorError).description.contains("dimension 1 out of range"))
        }
        XCTAssertThrowsError(try ShapeRules.cat([[], []], dim: 0)) { e in
            XCTAssertTrue((e as! TensorError).description.contains("0-d"))
        }
    }

    func testStackInsertsANewDimension() {
        let a = t([1, 2, 3], [3]), b = t([4, 5, 6], [3])
        let s0 = Tensor.stack([a, b])
        XCTAssertEqual(s0.shape, [2, 3])
        XCTAssertEqual(s0.doubles(), [1, 2, 3, 4, 5, 6])
        let s1 = Tensor.stack([a, b], dim: 1)
        XCTAssertEqual(s1.shape, [3, 2])
        XCTAssertEqual(s1.doubles(), [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(Tensor.stack([a, b], dim: -1).doubles(), s1.doubles())
        // Non-contiguous 2-D inputs stacked in the middle.
        let m = t([1, 2, 3, 4], [2, 2]).T             // [[1, 3], [2, 4]]
        let n = t([5, 6, 7, 8], [2, 2])
        let s = Tensor.stack([m, n, m], dim: 1)
        XCTAssertEqual(s.shape, [2, 3, 2])
        XCTAssertEqual(s.doubles(), [1, 3, 5, 6, 1, 3, 2, 4, 7, 8, 2, 4])
        // Scalars stack into a vector; empty tensors into an empty one.
        XCTAssertEqual(Tensor.stack([Tensor(scalar: 1.0), Tensor(scalar: 2.0)]).doubles(), [1, 2])
        XCTAssertEqual(Tensor.stack([Tensor.zeros([0, 2]), Tensor.zeros([0, 2])], dim: 2).shape, [0, 2, 2])
    }

    func testSplitSizesViewsAndValues() {
        let x = t((0..<12).map(Double.init), [3, 4])
        let parts = x.split([1, 3], dim: 1)
        XCTAssertEqual(parts.map(\.shape), [[3, 1], [3, 3]])
        XCTAssertEqual(parts[0].doubles(), [0, 4, 8])
        XCTAssertEqual(parts[1].doubles(), [1, 2, 3, 5, 6, 7, 9, 10, 11])
        // Views share storage with the source.
        XCTAssertTrue(parts[1].storageBlock === x.storageBlock)
        // Zero-size pieces are allowed.
        let z = x.split([0, 3, 0], dim: 0)
        XCTAssertEqual(z.map(\.shape), [[0, 4], [3, 4], [0, 4]])
        XCTAssertEqual(z[1].doubles(), x.doubles())
        // By size: last piece smaller.
        let bySize = x.split(size: 3, dim: -1)
        XCTAssertEqual(bySize.map(\.shape), [[3, 3], [3, 1]])
        XCTAssertEqual(bySize[1].doubles(), [3, 7, 11])
        XCTAssertEqual(x.split(size: 5).map(\.shape), [[3, 4]])
        XCTAssertEqual(Tensor.zeros([0, 2]).split(size: 2).map(\.shape), [[0, 2]])
        // Split of a non-contiguous tensor, then cat back.
        let tr = x.T
        let pieces = tr.split(size: 2)
        XCTAssertEqual(pieces.map(\.shape), [[2, 3], [2, 3]])
        XCTAssertEqual(Tensor.cat(pieces).doubles(), tr.doubles())
    }

    func testChunkLikeTorch() {
        let x = t((0..<5).map(Double.init), [5])
        XCTAssertEqual(x.chunk(2).map { $0.doubles() }, [[0, 1, 2], [3, 4]])
        XCTAssertEqual(x.chunk(5).map(\.count), [1, 1, 1, 1, 1])
        // torch.chunk(6 elements, 4) -> sizes 2, 2, 2 (fewer chunks than asked).
        XCTAssertEqual(t((0..<6).map(Double.init), [6]).chunk(4).map(\.count), [2, 2, 2])
        XCTAssertEqual(x.chunk(9).map(\.count), [1, 1, 1, 1, 1])
        XCTAssertEqual(Tensor.zeros([0]).chunk(3).map(\.shape), [[0], [0], [0]])
        let m = t((0..<6).map(Double.init), [2, 3])
        XCTAssertEqual(m.chunk(3, dim: 1).map { $0.doubles() }, [[0, 3], [1, 4], [2, 5]])
    }

    func testJoinGradientsRouteSlices() {
        let a = t([1, 2], [2]).requiringGrad(), b = t([3, 4, 5], [3]).requiringGrad()
        let y = Tensor.cat([a, b, a])
        y.backward(t([1, 2, 3, 4, 5, 6, 7], [7]))
        XCTAssertEqual(a.grad!.doubles(), [1 + 6, 2 + 7])
        XCTAssertEqual(b.grad!.doubles(), [3, 4, 5])
        let p = t([1, 2], [2]).requiringGrad(), q = t([3, 4], [2]).requiringGrad()
        Tensor.stack([p, q], dim: 1).backward(t([10, 20, 30, 40], [2, 2]))
        XCTAssertEqual(p.grad!.doubles(), [10, 30])
        XCTAssertEqual(q.grad!.doubles(), [20, 40])
        let x = t((0..<6).map(Double.init), [6]).requiringGrad()
        let parts = x.split([2, 4])
        (parts[1] * 2.0).sum().backward()
        XCTAssertEqual(x.grad!.doubles(), [0, 0, 2, 2, 2, 2])
    }
}
