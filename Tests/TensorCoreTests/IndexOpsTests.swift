import XCTest
import TensorCore

final class IndexOpsTests: XCTestCase {
    func t(_ values: [Double], _ shape: [Int]) -> Tensor { try! Tensor(values, shape: shape) }
    func i64(_ values: [Int64], _ shape: [Int]) -> Tensor { try! Tensor(values, shape: shape) }

    func testGatherLikeTorch() {
        // torch.gather(torch.tensor([[1, 2], [3, 4]]), 1, torch.tensor([[0, 0], [1, 0]])) == [[1, 1], [4, 3]]
        let x = t([1, 2, 3, 4], [2, 2])
        XCTAssertEqual(x.gather(dim: 1, index: i64([0, 0, 1, 0], [2, 2])).doubles(), [1, 1, 4, 3])
        // dim 0 with a smaller index and Int32 indices.
        let y = t((0..<12).map(Double.init), [3, 4])
        let g = y.gather(dim: 0, index: try! Tensor([Int32(2), 0, 1], shape: [1, 3]))
        XCTAssertEqual(g.shape, [1, 3])
        XCTAssertEqual(g.doubles(), [8, 1, 6])
        // Non-contiguous input and index.
        let yt = y.T                                      // [4, 3]: yt[i][j] = y[j][i] = 4j + i
        let idx = i64([0, 2, 1, 1, 0, 2, 2, 2], [2, 4]).T  // [4, 2]: [[0, 0], [2, 2], [1, 2], [1, 2]]
        XCTAssertFalse(idx.isContiguous)
        let gt = yt.gather(dim: 1, index: idx)
        XCTAssertEqual(gt.shape, [4, 2])
        XCTAssertEqual(gt.doubles(), [0, 0, 9, 9, 6, 10, 7, 11])
        // Empty index and other dtypes.
        XCTAssertEqual(y.gather(dim: 1, index: Tensor.zeros([3, 0], dtype: .int64)).shape, [3, 0])
        let ints = Tensor([Int64(10), 20, 30]).gather(dim: 0, index: Tensor([Int64(2), 2, 0]))
        XCTAssertEqual(ints.scalars(as: Int64.self), [30, 30, 10])
        let half = t([1, 2, 3], [3]).to(.bfloat16).gather(dim: 0, index: Tensor([Int64(1)]))
        XCTAssertEqual(half.dtype, .bfloat16)
        XCTAssertEqual(half.doubles(), [2])
        // 0-d input with 0-d index.
        XCTAssertEqual(Tensor(scalar: 5.0).gather(dim: 0, index: Tensor(scalar: Int64(0))).doubles(), [5])
    }

    func testGatherGradientAccumulatesRepeats() {
        let x = t([1, 2, 3, 4, 5, 6], [2, 3]).requiringGrad()
        x.gather(dim: 1, index: i64([2, 2, 0, 1, 1, 1], [2, 3])).backward(t([1, 2, 3, 4, 5, 6], [2, 3]))
        XCTAssertEqual(x.grad!.doubles(), [3, 0, 1 + 2, 0, 4 + 5 + 6, 0])
    }

    func testScatterAddLikeTorch() {
        // torch.zeros(3, 5).scatter_add(0, [[0, 1, 2, 0, 0]], ones(2, 5)) -> row sums.
        let base = Tensor.zeros([3, 5], dtype: .float64)
        let src = Tensor.ones([2, 5], dtype: .float64)
        let index = i64([0, 1, 2, 0, 0], [1, 5])
        let out = base.scatterAdd(dim: 0, index: index, source: src)
        XCTAssertEqual(out.doubles(), [1, 0, 0, 1, 1,
                                       0, 1, 0, 0, 0,
                                       0, 0, 1, 0, 0])
        // Repeats accumulate; base values are kept; self is unchanged.
        let b2 = t([10, 20, 30], [3])
        let r = b2.scatterAdd(dim: 0, index: Tensor([Int64(2), 2, 0, 2]), source: t([1, 2, 3, 4], [4]))
        XCTAssertEqual(r.doubles(), [13, 20, 37])
        XCTAssertEqual(b2.doubles(), [10, 20, 30])
        // Non-contiguous self and source, dim 1, Float32.
        let s = Tensor.zeros([3, 2]).T                   // [2, 3] non-contiguous
        let srcT = try! Tensor([Float(1), 2, 3, 4], shape: [2, 2]).T   // [[1, 3], [2, 4]]
        let r2 = s.scatterAdd(dim: 1, index: i64([2, 0, 1, 1], [2, 2]), source: srcT)
        XCTAssertEqual(r2.dtype, .float32)
        XCTAssertEqual(r2.doubles(), [3, 0, 1, 0, 6, 0])
        // Half precision accumulates in Float32.
        let h = Tensor.zeros([2], dtype: .float16).scatterAdd(dim: 0, index: Tensor([Int32(1), 1]), source: Tensor.full([2], 0.25, dtype: .float16))
        XCTAssertEqual(h.dtype, .float16)
        XCTAssertEqual(h.doubles(), [0, 0.5])
    }

    func testScatterAddGradients() {
        let base = t([1, 2, 3], [3]).requiringGrad()
        let src = t([1, 1, 1, 1], [4]).requiringGrad()
        base.scatterAdd(dim: 0, index: Tensor([Int64(0), 2, 2, 1]), source: src).backward(t([5, 6, 7], [3]))
        XCTAssertEqual(base.grad!.doubles(), [5, 6, 7])
        XCTAssertEqual(src.grad!.doubles(), [5, 7, 7, 6])
    }

    func testIndexSelect() {
        let x = t((0..<12).map(Double.init), [3, 4])
        let r = x.indexSelect(dim: 0, index: Tensor([Int64(2), 0, 2]))
        XCTAssertEqual(r.shape, [3, 4])
        XCTAssertEqual(r.doubles(), [8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11])
        let c = x.indexSelect(dim: -1, index: Tensor([Int32(3), 1]))
        XCTAssertEqual(c.shape, [3, 2])
        XCTAssertEqual(c.doubles(), [3, 1, 7, 5, 11, 9])
        // Non-contiguous input and a strided index.
        let idx = Tensor([Int64(1), 9, 0, 9, 1]).slice(dim: 0, 0..<5, step: 2)   // [1, 0, 1]
        let xt = x.T                                                              // [4, 3]
        XCTAssertEqual(xt.indexSelect(dim: 1, index: idx).doubles(), [4, 0, 4, 5, 1, 5, 6, 2, 6, 7, 3, 7])
        XCTAssertEqual(x.indexSelect(dim: 0, index: Tensor.zeros([0], dtype: .int64)).shape, [0, 4])
        // Gradient accumulates repeats.
        let w = t([1, 2, 3, 4], [2, 2]).requiringGrad()
        w.indexSelect(dim: 0, index: Tensor([Int64(1), 1, 0])).backward(t([1, 2, 3, 4, 5, 6], [3, 2]))
        XCTAssertEqual(w.grad!.doubles(), [5, 6, 1 + 3, 2 + 4])
    }

    func testEmbeddingShapesValuesAndRepeatedGradients() {
        let w = t([0, 1, 10, 11, 20, 21], [3, 2]).requiringGrad()
        let ids = i64([2, 0, 2, 2], [2, 2])
        let e = Tensor.embedding(ids, weight: w)
        XCTAssertEqual(e.shape, [2, 2, 2])
        XCTAssertEqual(e.doubles(), [20, 21, 0, 1, 20, 21, 20, 21])
        e.backward(t([1, 1, 2, 2, 3, 3, 4, 4], [2, 2, 2]))
        XCTAssertEqual(w.grad!.doubles(), [2, 2, 0, 0, 8, 8])
        // 0-d index gives one row; Int32 and empty indices work.
        XCTAssertEqual(Tensor.embedding(Tensor(scalar: Int32(1)), weight: w.detached()).doubles(), [10, 11])
        XCTAssertEqual(Tensor.embedding(Tensor.zeros([2, 0], dtype: .int64), weight: w.detached()).shape, [2, 0, 2])
        // Float32 weight, non-contiguous.
        let wf = try! Tensor([Float(1), 2, 3, 4, 5, 6], shape: [2, 3]).T   // [3, 2]: [[1, 4], [2, 5], [3, 6]]
        XCTAssertEqual(Tensor.embedding(Tensor([Int64(2), 0]), weight: wf).doubles(), [3, 6, 1, 4])
    }

    func testOneHot() {
        let labels = i64([2, 0, 1, 2], [2, 2])
        let o = labels.oneHot(numClasses: 3)
        XCTAssertEqual(o.dtype, .float32)
        XCTAssertEqual(o.shape, [2, 2, 3])
        XCTAssertEqual(o.doubles(), [0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1])
        XCTAssertEqual(Tensor([Int32(1)]).oneHot(numClasses: 2).doubles(), [0, 1])
        XCTAssertEqual(Tensor.zeros([0], dtype: .int64).oneHot(numClasses: 4).shape, [0, 4])
        // Non-contiguous labels keep row-major order.
        XCTAssertEqual(labels.T.oneHot(numClasses: 3).doubles(), [0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1])
    }

    func testDropoutMask() {
        let g = Generator(seed: 42)
        let m = Tensor.dropoutMask([200, 50], p: 0.3, generator: g)
        XCTAssertEqual(m.shape, [200, 50])
        XCTAssertEqual(m.dtype, .float32)
        let v = m.doubles()
        let keep = Double(Float(1 / 0.7))
        XCTAssertTrue(v.allSatisfy { $0 == 0 || $0 == keep })
        let dropped = Double(v.filter { $0 == 0 }.count) / Double(v.count)
        XCTAssertEqual(dropped, 0.3, accuracy: 0.02)             // 10,000 draws: sd ≈ 0.005
        XCTAssertEqual(v.reduce(0, +) / Double(v.count), 1, accuracy: 0.03)
        // Same seed, same mask; state replay reproduces it.
        let g2 = Generator(seed: 42)
        XCTAssertEqual(Tensor.dropoutMask([200, 50], p: 0.3, generator: g2).doubles(), v)
        let state = g.currentState
        let m1 = Tensor.dropoutMask([7], p: 0.5, dtype: .float64, generator: g)
        g.currentState = state
        XCTAssertEqual(Tensor.dropoutMask([7], p: 0.5, dtype: .float64, generator: g).doubles(), m1.doubles())
        // p = 0 gives ones and consumes nothing.
        let before = g.currentState
        XCTAssertEqual(Tensor.dropoutMask([3], p: 0, dtype: .bfloat16, generator: g).doubles(), [1, 1, 1])
        XCTAssertEqual(g.currentState, before)
    }
}
