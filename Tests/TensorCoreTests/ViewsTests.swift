import XCTest
import TensorCore

final class ViewsTests: XCTestCase {
    func t(_ values: [Double], _ shape: [Int]) -> Tensor { try! Tensor(values, shape: shape) }
    func iota(_ shape: [Int]) -> Tensor { t((0..<shape.reduce(1, *)).map(Double.init), shape) }

    /// Every multi-index of `shape`, row-major.
    func indices(_ shape: [Int]) -> [[Int]] {
        var out: [[Int]] = [[]]
        for n in shape { out = out.flatMap { p in (0..<n).map { p + [$0] } } }
        return out
    }

    /// Element `idx` of a tensor, read from its row-major values (the oracle for view ops).
    func at(_ x: Tensor, _ idx: [Int]) -> Double {
        let v = x.doubles()
        var linear = 0
        for (i, n) in zip(idx, x.shape) { linear = linear * n + i }
        return v[linear]
    }

    /// An iota tensor of `shape` and its non-contiguous twin (a transposed copy transposed back).
    func pair(_ shape: [Int]) -> [Tensor] {
        let (dense, nc) = densePair(shape)
        return [dense, nc]
    }

    func densePair(_ shape: [Int]) -> (Tensor, Tensor) {
        let dense = iota(shape)
        let nc = dense.transposed(0, -1).contiguous().transposed(0, -1)
        XCTAssertFalse(nc.isContiguous)
        XCTAssertEqual(nc.doubles(), dense.doubles())
        return (dense, nc)
    }

    func testReshapeAndMinusOne() {
        for x in pair([3, 4]) {
            let r = x.reshaped([2, -1])
            XCTAssertEqual(r.shape, [2, 6])
            XCTAssertEqual(r.doubles(), (0..<12).map(Double.init))
            XCTAssertEqual(x.reshaped([-1]).shape, [12])
            XCTAssertEqual(x.reshaped([2, 3, 2]).doubles(), (0..<12).map(Double.init))
            XCTAssertEqual(x.reshaped([1, -1, 1]).shape, [1, 12, 1])
        }
        // Contiguous reshape is a view; non-contiguous copies.
        let (dense, nc) = densePair([3, 4])
        XCTAssertTrue(dense.reshaped([12]).storageBlock === dense.storageBlock)
        XCTAssertFalse(nc.reshaped([12]).storageBlock === nc.storageBlock)
        // A contiguous view with an offset keeps its offset.
        let rows = dense.narrowed(dim: 0, start: 1, length: 2)
        XCTAssertEqual(rows.reshaped([4, 2]).doubles(), (4..<12).map(Double.init))
        // Scalars and empty tensors.
        XCTAssertEqual(Tensor(scalar: 3.0).reshaped([1, 1]).doubles(), [3])
        XCTAssertEqual(t([7], [1, 1]).reshaped([]).shape, [])
        XCTAssertEqual(Tensor.zeros([0, 3]).reshaped([3, 0]).shape, [3, 0])
    }

    func testReshapeErrorMessages() {
        XCTAssertEqual(try ShapeRules.reshape([2, 3], count: 6, to: [-1, 2]), [3, 2])
        func message(_ shape: [Int], _ to: [Int]) -> String {
            do { _ = try ShapeRules.reshape(shape, count: shape.reduce(1, *), to: to); return "no error" } catch { return error.description }
        }
        XCTAssertEqual(message([2, 3], [4, 2]), "reshape: cannot reshape [2, 3] (6 elements) to [4, 2] (8 elements)")
        XCTAssertEqual(message([2, 3], [4, -1]), "reshape: cannot reshape [2, 3] (6 elements) to [4, -1]")
        XCTAssertEqual(message([2, 3], [-1, -1]), "reshape: [-1, -1] has more than one -1")
        XCTAssertEqual(message([2, 3], [-2, -3]), "reshape: [-2, -3] has a negative dimension")
        XCTAssertEqual(message([0, 3], [0, -1]), "reshape: cannot reshape [0, 3] (0 elements) to [0, -1]")
    }

    func testFlatten() {
        for x in pair([2, 3, 4]) {
            XCTAssertEqual(x.flattened().shape, [24])
            XCTAssertEqual(x.flattened().doubles(), (0..<24).map(Double.init))
            XCTAssertEqual(x.flattened(startDim: 1).shape, [2, 12])
            XCTAssertEqual(x.flattened(startDim: 0, endDim: 1).shape, [6, 4])
            XCTAssertEqual(x.flattened(startDim: -2, endDim: -1).doubles(), (0..<24).map(Double.init))
            XCTAssertEqual(x.flattened(startDim: 1, endDim: 1).shape, [2, 3, 4])
        }
        XCTAssertEqual(Tensor(scalar: 2.0).flattened().shape, [1])
    }

    func testPermuteTransposeAndT() {
        for x in pair([2, 3, 4]) {
            let p = x.permuted([2, 0, 1])
            XCTAssertEqual(p.shape, [4, 2, 3])
            for idx in indices(p.shape) {
                XCTAssertEqual(at(p, idx), at(x, [idx[1], idx[2], idx[0]]), "permute \(idx)")
            }
            let q = x.permuted([-1, 1, 0])
            XCTAssertEqual(q.shape, [4, 3, 2])
            for idx in indices(q.shape) { XCTAssertEqual(at(q, idx), at(x, [idx[2], idx[1], idx[0]])) }
            let tr = x.transposed()    // last two dims
            XCTAssertEqual(tr.shape, [2, 4, 3])
            for idx in indices(tr.shape) { XCTAssertEqual(at(tr, idx), at(x, [idx[0], idx[2], idx[1]])) }
            XCTAssertEqual(x.transposed(0, 2).doubles(), q.doubles())
        }
        let m = iota([2, 3])
        XCTAssertEqual(m.T.shape, [3, 2])
        XCTAssertEqual(m.T.doubles(), [0, 3, 1, 4, 2, 5])
        XCTAssertTrue(m.T.storageBlock === m.storageBlock)
        XCTAssertEqual(m.T.T.doubles(), m.doubles())
    }

    func testExpand() {
        let col = t([1, 2, 3], [3, 1])
        let e = col.expand([2, 3, 4])
        XCTAssertEqual(e.shape, [2, 3, 4])
        XCTAssertTrue(e.storageBlock === col.storageBlock)
        for idx in indices(e.shape) { XCTAssertEqual(at(e, idx), Double(idx[1] + 1)) }
        // Non-contiguous source: a row of a transposed matrix.
        let (_, nc) = densePair([3, 4])
        let row = nc.narrowed(dim: 0, start: 2, length: 1)     // [1, 4]: 8 9 10 11
        XCTAssertEqual(row.expand([2, 4]).doubles(), [8, 9, 10, 11, 8, 9, 10, 11])
        XCTAssertEqual(t([5], []).expand([2, 2]).doubles(), [5, 5, 5, 5])
        XCTAssertEqual(col.expand([3, 0]).shape, [3, 0])
    }

    func testNarrowAndSliceWithStep() {
        for x in pair([3, 4]) {
            let n = x.narrowed(dim: 1, start: 1, length: 2)
            XCTAssertEqual(n.shape, [3, 2])
            XCTAssertEqual(n.doubles(), [1, 2, 5, 6, 9, 10])
            XCTAssertTrue(n.storageBlock === x.storageBlock)
            XCTAssertEqual(x.narrowed(dim: -2, start: 2, length: 1).doubles(), [8, 9, 10, 11])
            XCTAssertEqual(x.narrowed(dim: 0, start: 3, length: 0).shape, [0, 4])
            let s = x.slice(dim: 1, 0..<4, step: 2)
            XCTAssertEqual(s.shape, [3, 2])
            XCTAssertEqual(s.doubles(), [0, 2, 4, 6, 8, 10])
            let s2 = x.slice(dim: 1, 1..<4, step: 2)
            XCTAssertEqual(s2.doubles(), [1, 3, 5, 7, 9, 11])
            XCTAssertEqual(x.slice(dim: 0, 0..<3, step: 5).doubles(), [0, 1, 2, 3])
            XCTAssertEqual(x.slice(dim: 0, 1..<3).doubles(), (4..<12).map(Double.init))
            // A slice of a slice.
            XCTAssertEqual(x.slice(dim: 1, 0..<4, step: 2).slice(dim: 0, 0..<3, step: 2).doubles(), [0, 2, 8, 10])
        }
        let v = iota([10])
        XCTAssertEqual(v.slice(dim: 0, 1..<10, step: 3).doubles(), [1, 4, 7])
        XCTAssertEqual(v.slice(dim: 0, 2..<2, step: 3).shape, [0])
    }

    func testSqueezeUnsqueeze() {
        for x in pair([3, 4]) {
            let u = x.unsqueezed(dim: 1)
            XCTAssertEqual(u.shape, [3, 1, 4])
            XCTAssertEqual(u.doubles(), x.doubles())
            XCTAssertEqual(x.unsqueezed(dim: -1).shape, [3, 4, 1])
            XCTAssertEqual(x.unsqueezed(dim: 0).shape, [1, 3, 4])
            XCTAssertEqual(u.squeezed().shape, [3, 4])
            XCTAssertEqual(u.squeezed(dim: 1).doubles(), x.doubles())
            XCTAssertEqual(u.squeezed(dim: 0).shape, [3, 1, 4])   // not size 1: unchanged
        }
        XCTAssertEqual(t([4], [1, 1, 1]).squeezed().shape, [])
        XCTAssertEqual(Tensor(scalar: 1.0).unsqueezed(dim: 0).shape, [1])
    }

    func testContiguousAndPadded() {
        let (dense, nc) = densePair([3, 4])
        XCTAssertTrue(dense.contiguous().storageBlock === dense.storageBlock)
        let c = nc.contiguous()
        XCTAssertTrue(c.isContiguous)
        XCTAssertEqual(c.strides, [4, 1])
        XCTAssertEqual(c.doubles(), dense.doubles())
        let tc = dense.T.contiguous()
        XCTAssertEqual(tc.strides, [3, 1])
        XCTAssertEqual(tc.doubles(), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
        for x in [dense, nc] {
            let p = x.padded(dim: 1, before: 1, after: 2)
            XCTAssertEqual(p.shape, [3, 7])
            XCTAssertEqual(p.doubles(), [0, 0, 1, 2, 3, 0, 0,
                                         0, 4, 5, 6, 7, 0, 0,
                                         0, 8, 9, 10, 11, 0, 0])
            XCTAssertEqual(x.padded(dim: 0, before: 0, after: 1).doubles(), (0..<12).map(Double.init) + [0, 0, 0, 0])
            XCTAssertEqual(x.padded(dim: -1, before: 0, after: 0).doubles(), x.doubles())
        }
        let ints = Tensor([Int32(1), 2]).padded(dim: 0, before: 1, after: 1)
        XCTAssertEqual(ints.scalars(as: Int32.self), [0, 1, 2, 0])
    }

    func testViewsOfIntegerAndHalfTensorsKeepDType() {
        let x = Tensor([Int64(1), 2, 3, 4, 5, 6]).reshaped([2, 3])
        XCTAssertEqual(x.dtype, .int64)
        XCTAssertEqual(x.T.scalars(as: Int64.self), [1, 4, 2, 5, 3, 6])
        let h = iota([2, 3]).to(.float16).T.contiguous()
        XCTAssertEqual(h.dtype, .float16)
        XCTAssertEqual(h.doubles(), [0, 3, 1, 4, 2, 5])
    }

    func testViewGradientsFlowBack() {
        let x = iota([2, 3]).requiringGrad()
        let y = x.T.reshaped([-1]).narrowed(dim: 0, start: 1, length: 4)   // x[1,0], x[0,1], x[1,1], x[0,2]
        y.backward(t([1, 2, 3, 4], [4]))
        XCTAssertEqual(x.grad!.doubles(), [0, 2, 4, 1, 3, 0])
        let z = t([1, 2], [2, 1]).requiringGrad()
        z.expand([2, 3]).sum().backward()
        XCTAssertEqual(z.grad!.doubles(), [3, 3])
        let w = iota([5]).requiringGrad()
        w.slice(dim: 0, 0..<5, step: 2).backward(t([1, 1, 1], [3]))
        XCTAssertEqual(w.grad!.doubles(), [1, 0, 1, 0, 1])
    }
}
