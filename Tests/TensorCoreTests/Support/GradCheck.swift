import XCTest
import TensorCore

/// Finite-difference gradient checking in Float64.
///
/// For inputs x and a random cotangent c, compares the autograd VJP of <f(x), c>
/// with central differences (f(x + h e_i) - f(x - h e_i)) / 2h for every element i.
struct GradCheckCase {
    /// The inputs (Float64; some may be non-contiguous views).
    var inputs: [Tensor]
    var atol: Double = 1e-6
    var rtol: Double = 1e-5
    var eps: Double = 1e-6
    var f: ([Tensor]) -> Tensor

    init(inputs: [Tensor], atol: Double = 1e-6, rtol: Double = 1e-5, eps: Double = 1e-6, _ f: @escaping ([Tensor]) -> Tensor) {
        self.inputs = inputs
        self.atol = atol
        self.rtol = rtol
        self.eps = eps
        self.f = f
    }
}

/// Makes a tensor with the same values as `dense` but a non-contiguous layout.
func nonContiguous(_ dense: Tensor) -> Tensor {
    if dense.rank < 2 || dense.shape.suffix(2).contains(1) {
        // Take every other element of a doubled buffer.
        let vals = dense.doubles()
        var doubled = [Double](repeating: 0, count: vals.count * 2)
        for (i, v) in vals.enumerated() { doubled[2 * i] = v }
        let flat = try! Tensor(doubled, shape: [vals.count * 2]).to(dense.dtype).slice(dim: 0, 0..<(vals.count * 2), step: 2).detached()
        // Reshape of a strided 1-D view would copy; build the strided view directly via as_strided-like expand.
        if dense.rank <= 1 { return flat.reshaped(dense.shape).detached() }
        return flat.detached().reshaped(dense.shape).detached()
    }
    return dense.transposed(-1, -2).contiguous().detached().transposed(-1, -2).detached()
}

/// Rebuilds `template`'s layout (contiguous or not) with new values.
func withLayout(of template: Tensor, values: [Double]) -> Tensor {
    let dense = try! Tensor(values, shape: template.shape).to(template.dtype)
    return template.isContiguous ? dense : nonContiguous(dense)
}

/// Checks analytic against numeric gradients; records an XCTest failure naming the case, input and element.
func assertGradientsMatch(_ name: String, _ c: GradCheckCase, seed: UInt64 = 7, file: StaticString = #filePath, line: UInt = #line) {
    let gen = Generator(seed: seed)
    let out0 = noGrad { c.f(c.inputs) }
    let cot = Tensor.randn(out0.shape, dtype: out0.dtype, generator: gen)
    let (_, analytic) = vjp(of: c.inputs, cotangent: cot) { c.f($0) }
    let cotValues = cot.doubles()
    func objective(_ xs: [Tensor]) -> Double {
        let y = noGrad { c.f(xs) }.doubles()
        var s = 0.0
        for i in 0..<y.count { s += y[i] * cotValues[i] }
        return s
    }
    for (k, x) in c.inputs.enumerated() where x.dtype.isFloatingPoint {
        XCTAssertEqual(analytic[k].shape, x.shape, "\(name): gradient shape of input \(k)", file: file, line: line)
        let base = x.doubles()
        let a = analytic[k].doubles()
        for i in 0..<base.count {
            var plus = base, minus = base
            plus[i] += c.eps
            minus[i] -= c.eps
            var xp = c.inputs, xm = c.inputs
            xp[k] = withLayout(of: x, values: plus)
            xm[k] = withLayout(of: x, values: minus)
            let numeric = (objective(xp) - objective(xm)) / (2 * c.eps)
            let err = abs(numeric - a[i])
            if !(err <= c.atol + c.rtol * abs(numeric)) {
                XCTFail("\(name): input \(k) element \(i): analytic \(a[i]) vs numeric \(numeric)", file: file, line: line)
                return
            }
        }
    }
}

/// Random Float64 input of `shape` (normal, or uniform in [low, high)), optionally non-contiguous.
func randInput(_ shape: [Int], contiguous: Bool = true, low: Double? = nil, high: Double? = nil, seed: UInt64 = 1) -> Tensor {
    let gen = Generator(seed: seed &+ UInt64(shape.reduce(0, { $0 &* 31 &+ $1 })))
    let t: Tensor
    if let low, let high {
        t = Tensor.rand(shape, low: low, high: high, dtype: .float64, generator: gen)
    } else {
        t = Tensor.randn(shape, dtype: .float64, generator: gen)
    }
    return contiguous ? t : nonContiguous(t)
}
