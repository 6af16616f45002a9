import XCTest
import Foundation
import TensorCore
@testable import Optimizers

// Independent Float64 references of PyTorch's update rules, written as plain loops over
// [Double] from the formulas in torch/optim/sgd.py and adam.py (single-tensor paths).

/// torch.optim.SGD (dampening 0): lazily created momentum buffer.
struct ReferenceSGD {
    var lr: (Int) -> Double
    var momentum = 0.0
    var nesterov = false
    var weightDecay = 0.0
    var buffers: [[Double]?] = []
    var step = 0

    mutating func update(_ params: inout [[Double]], _ grads: [[Double]]) {
        if buffers.isEmpty { buffers = Array(repeating: nil, count: params.count) }
        let lrNow = lr(step)
        for i in params.indices {
            var d = grads[i]
            if weightDecay != 0 { for j in d.indices { d[j] += weightDecay * params[i][j] } }
            if momentum != 0 {
                var buf: [Double]
                if let b = buffers[i] {
                    buf = b
                    for j in buf.indices { buf[j] = momentum * buf[j] + d[j] }
                } else {
                    buf = d
                }
                buffers[i] = buf
                if nesterov { for j in d.indices { d[j] += momentum * buf[j] } } else { d = buf }
            }
            for j in d.indices { params[i][j] -= lrNow * d[j] }
        }
        step += 1
    }
}

/// torch.optim.Adam / AdamW (decoupled: param *= 1 - lr * wd before the Adam step).
struct ReferenceAdam {
    var lr: (Int) -> Double
    var b1 = 0.9, b2 = 0.999, eps = 1e-8
    var weightDecay = 0.0
    var decoupled = false
    var m: [[Double]] = [], v: [[Double]] = []
    var step = 0

    mutating func update(_ params: inout [[Double]], _ grads: [[Double]]) {
        if m.isEmpty {
            m = params.map { Array(repeating: 0, count: $0.count) }
            v = m
        }
        let lrNow = lr(step)
        step += 1
        let t = Double(step)
        let bc1 = 1 - Foundation.pow(b1, t), bc2 = 1 - Foundation.pow(b2, t)
        for i in params.indices {
            var g = grads[i]
            if weightDecay != 0 {
                if decoupled {
                    for j in g.indices { params[i][j] *= 1 - lrNow * weightDecay }
                } else {
                    for j in g.indices { g[j] += weightDecay * params[i][j] }
                }
            }
            for j in g.indices {
                m[i][j] = b1 * m[i][j] + (1 - b1) * g[j]
                v[i][j] = b2 * v[i][j] + (1 - b2) * g[j] * g[j]
                let denom = (v[i][j]).squareRoot() / bc2.squareRoot() + eps
                params[i][j] -= lrNow / bc1 * m[i][j] / denom
            }
        }
    }
}

// MARK: - Data helpers

/// Deterministic pseudo-random gradient values for (step, parameter, element).
func pseudoGrad(step k: Int, param i: Int, count: Int, scale: Double = 1) -> [Double] {
    let amplitude: Double = scale * (1 + 0.3 * Double(k % 3))
    let phase: Double = 1.7 * Double(i) + 0.91 * Double(k)
    return (0..<count).map { (j: Int) -> Double in
        let angle: Double = 0.37 * Double(j + 1) + phase
        return amplitude * Foundation.sin(angle)
    }
}

/// Parameter values for parameter `i`.
func pseudoParam(_ i: Int, count: Int) -> [Double] {
    (0..<count).map { (j: Int) -> Double in
        let angle: Double = 0.53 * Double(j) + 2.3 * Double(i)
        return 1.5 * Foundation.cos(angle)
    }
}

/// The shapes used by the alias tests: a matrix, a vector, a scalar, an odd shape, an empty tensor.
let testShapes: [[Int]] = [[2, 3], [4], [], [1, 5], [0, 3]]

func elementCount(_ shape: [Int]) -> Int { shape.reduce(1, *) }

/// Makes leaf parameters (Float64 by default) holding `values`.
func makeParams(_ values: [[Double]], shapes: [[Int]], dtype: DType = .float64) -> [Tensor] {
    zip(values, shapes).map { v, s in try! Tensor(v, shape: s).to(dtype).detached().requiringGrad() }
}

/// Runs `steps` updates of `transformation` through `Optimizer` and of `reference` on plain
/// arrays with the same gradients; asserts they agree within `tol` after every step.
func assertMatchesReference(_ name: String, _ transformation: any GradientTransformation,
                            reference: (inout [[Double]], [[Double]]) -> Void,
                            steps: Int = 6, dtype: DType = .float64, tol: Double = 1e-12,
                            gradScale: Double = 1, file: StaticString = #filePath, line: UInt = #line) {
    var expected = testShapes.enumerated().map { pseudoParam($0.offset, count: elementCount($0.element)) }
    var params = makeParams(expected, shapes: testShapes, dtype: dtype)
    if dtype != .float64 {
        expected = params.map { $0.doubles() }   // start from the rounded values
    }
    var opt = Optimizer(transformation, params: params)
    for k in 0..<steps {
        let grads = testShapes.enumerated().map { pseudoGrad(step: k, param: $0.offset, count: elementCount($0.element), scale: gradScale) }
        for (i, p) in params.enumerated() { p.grad = try! Tensor(grads[i], shape: testShapes[i]).to(dtype) }
        // The reference sees the gradients as rounded to the tensor dtype.
        let roundedGrads = params.map { $0.grad!.doubles() }
        opt.step(&params)
        reference(&expected, roundedGrads)
        for i in params.indices {
            let got = params[i].doubles()
            XCTAssertEqual(got.count, expected[i].count, "\(name): parameter \(i) count", file: file, line: line)
            for j in got.indices where abs(got[j] - expected[i][j]) > tol * max(1, abs(expected[i][j])) {
                XCTFail("\(name): step \(k) parameter \(i) element \(j): got \(got[j]), reference \(expected[i][j])", file: file, line: line)
                return
            }
        }
    }
    XCTAssertEqual(opt.stepCount, steps, file: file, line: line)
}
