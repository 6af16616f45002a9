import XCTest
import TensorCore

/// Reduction, softmax, sort and scan ops against hand-computed values (PyTorch semantics).
final class ReductionOpsTests: XCTestCase {
    func t(_ values: [Double], _ shape: [Int]) -> Tensor { try! Tensor(values, shape: shape) }

    func assertClose(_ a: [Double], _ b: [Double], tol: Double = 1e-9, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, "counts differ: \(a) vs \(b)", file: file, line: line)
        for (x, y) in zip(a, b) where !(x.isNaN && y.isNaN) && x != y {
            XCTAssert(Swift.abs(x - y) <= tol * Swift.max(1, Swift.abs(y)), "\(a) vs \(b)", file: file, line: line)
        }
    }

    // MARK: - sum, mean, variance

    func testSumAndMean() {
        let x = t([1, 2, 3, 4, 5, 6], [2, 3])
        XCTAssertEqual(x.sum().doubles(), [21])
        XCTAssertEqual(x.sum().shape, [])
        XCTAssertEqual(x.sum(dim: 0).doubles(), [5, 7, 9])
        let k = x.sum(dims: [-1], keepDim: true)
        XCTAssertEqual(k.shape, [2, 1])
        XCTAssertEqual(k.doubles(), [6, 15])
        XCTAssertEqual(x.sum(dims: [0, 1]).doubles(), [21])
        XCTAssertEqual(x.mean().doubles(), [3.5])
        XCTAssertEqual(x.mean(dim: 1).doubles(), [2, 5])
        // Non-contiguous: the transpose summed over dim 0 is the row sums.
        XCTAssertEqual(x.T.sum(dim: 0).doubles(), [6, 15])
        XCTAssertEqual(x.T.mean(dims: [1], keepDim: true).shape, [3, 1])
        // Integers sum to Int64.
        let ints = Tensor([Int32(1), 2, 3])
        XCTAssertEqual(ints.sum().dtype, .int64)
        XCTAssertEqual(ints.sum().item(), 6)
    }

    func testEmptyReductions() {
        let e = Tensor.zeros([0, 3], dtype: .float64)
        XCTAssertEqual(e.sum().item(), 0)
        XCTAssertEqual(e.sum(dim: 0).doubles(), [0, 0, 0])
        XCTAssertTrue(e.mean().item().isNaN)
        XCTAssertTrue(e.mean(dim: 0).doubles().allSatisfy(\.isNaN))
        XCTAssertTrue(e.variance(dims: [0]).doubles().allSatisfy(\.isNaN))
        // Reducing a non-empty dim of an empty tensor is fine and empty.
        XCTAssertEqual(e.amax(dims: [1]).shape, [0])
        XCTAssertEqual(e.max(dim: 1).values.shape, [0])
        XCTAssertEqual(e.logsumexp(dims: [0]).doubles(), [-.infinity, -.infinity, -.infinity])
    }

    func testNaNPropagates() {
        let x = t([1, .nan, 3, 4, 5, 6], [2, 3])
        XCTAssertTrue(x.sum().item().isNaN)
        let rows = x.sum(dim: 1).doubles()
        XCTAssertTrue(rows[0].isNaN)
        XCTAssertEqual(rows[1], 15)
        XCTAssertTrue(x.amax().item().isNaN)
        XCTAssertTrue(x.amin().item().isNaN)
        XCTAssertEqual(x.amax(dims: [1]).doubles()[1], 6)
        let m = x.max(dim: 1)
        XCTAssertTrue(m.values.doubles()[0].isNaN)
        XCTAssertEqual(m.indices.scalars(as: Int64.self), [1, 2])
        XCTAssertEqual(x.argmin(dim: 1).scalars(as: Int64.self), [1, 0])
    }

    func testVarianceAndStd() {
        let x = t([1, 2, 3, 4], [4])
        assertClose(x.variance().doubles(), [5.0 / 3])
        assertClose(x.variance(correction: 0).doubles(), [1.25])
        assertClose(x.std().doubles(), [(5.0 / 3).squareRoot()])
        assertClose(x.std(correction: 0).doubles(), [(1.25).squareRoot()])
        // Along dims, keepDim, non-contiguous.
        let m = t([1, 2, 3, 4, 6, 8], [2, 3])
        assertClose(m.variance(dims: [1]).doubles(), [1, 4])
        assertClose(m.variance(dims: [0], correction: 0, keepDim: true).doubles(), [2.25, 4, 6.25])
        XCTAssertEqual(m.variance(dims: [0], keepDim: true).shape, [1, 3])
        assertClose(m.T.variance(dims: [-2]).doubles(), [1, 4])
        assertClose(m.variance(dims: [0, 1]).doubles(), [m.variance().item()])
        // One element with correction 1: 0 / 0.
        XCTAssertTrue(t([7], [1]).variance().item().isNaN)
    }

    func testVarianceIsTwoPassStable() {
        // Float32 with a large offset: E[x²] − E[x]² would give garbage (or a negative value).
        let x = t([1e4 + 1, 1e4 + 2, 1e4 + 3, 1e4 + 4], [4]).to(.float32)
        XCTAssertEqual(x.variance().item(), 5.0 / 3, accuracy: 1e-4)
        let y = t([1e9 + 1, 1e9 + 2, 1e9 + 3, 1e9 + 4], [4])
        XCTAssertEqual(y.variance(correction: 0).item(), 1.25, accuracy: 1e-6)
    }

    func testHalfTypesAccumulateInFloat32() {
        // 4096 ones: a Float16 running sum would stop at 2048; BFloat16 at 256.
        let h = Tensor.ones([4096], dtype: .float16)
        XCTAssertEqual(h.sum().dtype, .float16)
        XCTAssertEqual(h.sum().item(), 4096)
        let b = Tensor.ones([512], dtype: .bfloat16)
        XCTAssertEqual(b.sum().item(), 512)
        XCTAssertEqual(b.mean().item(), 1)
        XCTAssertEqual(t([1, 2, 3, 4], [4]).to(.float16).variance().item(), 5.0 / 3, accuracy: 1e-3)
        let mh = t([1, 5, 2], [3]).to(.bfloat16).max(dim: 0)
        XCTAssertEqual(mh.values.dtype, .bfloat16)
        XCTAssertEqual(mh.values.item(), 5)
        XCTAssertEqual(mh.indices.item(), 1)
    }

    // MARK: - max, min, amax, argmax

    func testMaxMinAlongDimWithTies() {
        let x = t([1, 3, 3, 2, 2, 0], [2, 3])
        let mx = x.max(dim: 1)
        XCTAssertEqual(mx.values.doubles(), [3, 2])
        XCTAssertEqual(mx.indices.dtype, .int64)
        XCTAssertEqual(mx.indices.scalars(as: Int64.self), [1, 0], "first index on ties")
        let mn = x.min(dim: -1, keepDim: true)
        XCTAssertEqual(mn.values.shape, [2, 1])
        XCTAssertEqual(mn.values.doubles(), [1, 0])
        XCTAssertEqual(mn.indices.shape, [2, 1])
        XCTAssertEqual(mn.indices.scalars(as: Int64.self), [0, 2])
        XCTAssertEqual(x.max(dim: 0).values.doubles(), [2, 3, 3])
        XCTAssertEqual(x.T.max(dim: 0).indices.scalars(as: Int64.self), [1, 0])
        XCTAssertEqual(x.argmax(dim: 0).scalars(as: Int64.self), [1, 0, 0])
        XCTAssertEqual(x.argmin(dim: 1, keepDim: true).shape, [2, 1])
        XCTAssertEqual(Tensor([Int64(3), 7, 7]).argmax(dim: 0).item(), 1)
        let s = Tensor(scalar: 4.0).max(dim: 0)
        XCTAssertEqual(s.values.shape, [])
        XCTAssertEqual(s.values.item(), 4)
        XCTAssertEqual(s.indices.item(), 0)
    }

    func testMaxGradientGoesToTheChosenIndex() {
        let x = t([1, 3, 3, 2, 2, 0], [2, 3]).requiringGrad()
        x.max(dim: 1).values.sum().backward()
        XCTAssertEqual(x.grad!.doubles(), [0, 1, 0, 1, 0, 0])
    }

    func testAmaxAminAndTieSplitting() {
        let x = t([1, 3, 3, -2, 5, 0], [2, 3])
        XCTAssertEqual(x.amax().item(), 5)
        XCTAssertEqual(x.amax(dims: [1]).doubles(), [3, 5])
        XCTAssertEqual(x.amax(dims: [0], keepDim: true).shape, [1, 3])
        XCTAssertEqual(x.amax(dims: [0, -1]).item(), 5)
        XCTAssertEqual(x.amin(dims: [1]).doubles(), [1, -2])
        XCTAssertEqual(x.amin().item(), -2)
        let g = x.requiringGrad()
        g.amax(dims: [1]).sum().backward()
        XCTAssertEqual(g.grad!.doubles(), [0, 0.5, 0.5, 0, 1, 0], "ties split the gradient evenly")
    }

    // MARK: - logsumexp, norm

    func testLogsumexp() {
        XCTAssertEqual(t([-.infinity, -.infinity], [2]).logsumexp(dims: [0]).item(), -.infinity)
        XCTAssertEqual(t([1000, 1000], [2]).logsumexp(dims: [0]).item(), 1000 + Foundation.log(2.0), accuracy: 1e-9)
        XCTAssertEqual(t([.infinity, 1], [2]).logsumexp(dims: [0]).item(), .infinity)
        XCTAssertTrue(t([.nan, 1], [2]).logsumexp(dims: [0]).item().isNaN)
        let x = t([0, Foundation.log(3.0), 1, 2], [2, 2])
        assertClose(x.logsumexp(dims: [1]).doubles(), [Foundation.log(4.0), Foundation.log(Foundation.exp(1.0) + Foundation.exp(2.0))])
        XCTAssertEqual(x.logsumexp(dims: [-1], keepDim: true).shape, [2, 1])
        assertClose(x.T.logsumexp(dims: [0, 1]).doubles(), [Foundation.log(1 + 3 + Foundation.exp(1.0) + Foundation.exp(2.0))])
        let f = t([1000, 1001], [2]).to(.float32).logsumexp(dims: [0])
        XCTAssertEqual(f.item(), 1001 + Foundation.log(1 + Foundation.exp(-1.0)), accuracy: 1e-3)
    }

    func testNorms() {
        let x = t([3, -4], [2])
        XCTAssertEqual(x.norm().item(), 5)
        XCTAssertEqual(x.norm(p: 1).item(), 7)
        XCTAssertEqual(x.norm(p: .infinity).item(), 4)
        XCTAssertEqual(x.norm(p: -.infinity).item(), 3)
        XCTAssertEqual(x.norm(p: 0).item(), 2)
        XCTAssertEqual(x.norm(p: 3).item(), Foundation.pow(91.0, 1.0 / 3), accuracy: 1e-12)
        let m = t([3, 4, 0, 1, -1, 0], [3, 2])
        assertClose(m.norm(dims: [1]).doubles(), [5, 1, 1])
        assertClose(m.norm(p: 1, dims: [0], keepDim: true).doubles(), [4, 5])
        XCTAssertEqual(m.norm(p: 1, dims: [0], keepDim: true).shape, [1, 2])
        assertClose(m.T.norm(p: .infinity, dims: [-1]).doubles(), [3, 4])
    }

    func testNormGradientAtZeroIsZero() {
        let z = Tensor.zeros([3], dtype: .float64).requiringGrad()
        z.norm().backward()
        XCTAssertEqual(z.grad!.doubles(), [0, 0, 0])
        let x = t([3, -4], [2]).requiringGrad()
        x.norm().backward()
        assertClose(x.grad!.doubles(), [0.6, -0.8])
    }

    // MARK: - softmax

    func testSoftmaxOfLargeLogitsIsFinite() {
        let x = t([1000, 1001], [2]).to(.float32)
        let s = x.softmax(dim: 0).doubles()
        let e = 1 / (1 + Foundation.exp(1.0))
        XCTAssertEqual(s[0], e, accuracy: 1e-6)
        XCTAssertEqual(s[1], 1 - e, accuracy: 1e-6)
        let l = x.logSoftmax(dim: -1).doubles()
        XCTAssertEqual(l[0], -1 - Foundation.log(1 + Foundation.exp(-1.0)), accuracy: 1e-5)
        XCTAssertEqual(l[1], -Foundation.log(1 + Foundation.exp(-1.0)), accuracy: 1e-5)
    }

    func testSoftmaxAlongDimsAndDtypes() {
        let x = t([1, 2, 3, 4, 5, 6], [2, 3])
        let s = x.softmax(dim: 0)
        XCTAssertEqual(s.shape, [2, 3])
        let col = 1 / (1 + Foundation.exp(3.0))
        assertClose(s.doubles(), [col, col, col, 1 - col, 1 - col, 1 - col])
        // Non-contiguous input along the last dim of the transpose.
        assertClose(x.T.softmax(dim: -1).doubles(), s.T.contiguous().doubles())
        assertClose(x.logSoftmax(dim: 1).doubles(), x.softmax(dim: 1).log().doubles(), tol: 1e-12)
        XCTAssertEqual(Tensor(scalar: 3.0).softmax(dim: 0).item(), 1)
        let h = x.to(.float16).softmax(dim: 1)
        XCTAssertEqual(h.dtype, .float16)
        assertClose(h.doubles(), x.softmax(dim: 1).doubles(), tol: 1e-3)
        // A line of -inf is NaN, as in PyTorch.
        XCTAssertTrue(t([-.infinity, -.infinity], [2]).softmax(dim: 0).doubles().allSatisfy(\.isNaN))
    }

    // MARK: - sort, topk

    func testSortIsStableWithNaNLast() {
        let x = t([3, 1, .nan, 2, 1], [5])
        let up = x.sorted()
        XCTAssertEqual(Array(up.values.doubles()[0..<4]), [1, 1, 2, 3])
        XCTAssertTrue(up.values.doubles()[4].isNaN)
        XCTAssertEqual(up.indices.scalars(as: Int64.self), [1, 4, 3, 0, 2])
        let down = x.sorted(descending: true)
        XCTAssertTrue(down.values.doubles()[0].isNaN)
        XCTAssertEqual(Array(down.values.doubles()[1...]), [3, 2, 1, 1])
        XCTAssertEqual(down.indices.scalars(as: Int64.self), [2, 0, 3, 1, 4])
        // Along dim 0 of a non-contiguous view.
        let m = t([4, 1, 2, 3, 0, 5], [2, 3]).T  // [[4, 3], [1, 0], [2, 5]]
        let s = m.sorted(dim: 0)
        XCTAssertEqual(s.values.doubles(), [1, 0, 2, 3, 4, 5])
        XCTAssertEqual(s.indices.scalars(as: Int64.self), [1, 1, 2, 0, 0, 2])
        XCTAssertEqual(Tensor([Int64(3), 1, 2]).sorted().values.scalars(as: Int64.self), [1, 2, 3])
    }

    func testSortGradientScattersBack() {
        let x = t([3, 1, 2], [3]).requiringGrad()
        (x.sorted().values * t([1, 2, 3], [3])).sum().backward()
        XCTAssertEqual(x.grad!.doubles(), [3, 1, 2])
    }

    func testTopk() {
        let x = t([1, 5, 3, 5, 2], [5])
        let top = x.topk(2)
        XCTAssertEqual(top.values.doubles(), [5, 5])
        XCTAssertEqual(top.indices.scalars(as: Int64.self), [1, 3])
        let low = x.topk(2, largest: false)
        XCTAssertEqual(low.values.doubles(), [1, 2])
        XCTAssertEqual(low.indices.scalars(as: Int64.self), [0, 4])
        let unsorted = x.topk(3, sorted: false)
        XCTAssertEqual(unsorted.indices.scalars(as: Int64.self), [1, 2, 3])
        XCTAssertEqual(unsorted.values.doubles(), [5, 3, 5])
        let m = t([1, 9, 8, 7, 2, 3], [2, 3])
        let k = m.topk(1, dim: 0)
        XCTAssertEqual(k.values.shape, [1, 3])
        XCTAssertEqual(k.values.doubles(), [7, 9, 8])
        XCTAssertEqual(m.topk(0, dim: 1).values.shape, [2, 0])
        let g = m.requiringGrad()
        g.topk(2, dim: 1).values.sum().backward()
        XCTAssertEqual(g.grad!.doubles(), [0, 1, 1, 1, 0, 1])
    }

    // MARK: - cumsum

    func testCumsum() {
        let x = t([1, 2, 3, 4], [2, 2])
        XCTAssertEqual(x.cumsum(dim: 0).doubles(), [1, 2, 4, 6])
        XCTAssertEqual(x.cumsum(dim: -1).doubles(), [1, 3, 3, 7])
        XCTAssertEqual(x.T.cumsum(dim: 1).doubles(), [1, 4, 2, 6])
        let ints = Tensor([Int32(1), 2, 3]).cumsum(dim: 0)
        XCTAssertEqual(ints.dtype, .int64)
        XCTAssertEqual(ints.scalars(as: Int64.self), [1, 3, 6])
        XCTAssertEqual(Tensor.zeros([0, 2], dtype: .float64).cumsum(dim: 0).shape, [0, 2])
        let g = x.requiringGrad()
        g.cumsum(dim: 1).sum().backward()
        XCTAssertEqual(g.grad!.doubles(), [2, 1, 2, 1], "gradient is the reversed cumsum")
    }
}
