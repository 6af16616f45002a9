import TensorCore

extension GradChecks {
    /// Binary arithmetic with broadcasting, non-contiguous inputs and casts.
    static var core: [String: [GradCheckCase]] {
        let a = randInput([3, 4]), b = randInput([4]), c = randInput([3, 1]), nc = randInput([4, 3], contiguous: false)
        let pos = randInput([3, 4], low: 0.5, high: 2), posB = randInput([1, 4], low: 0.5, high: 2)
        return [
            "add": [GradCheckCase(inputs: [a, b]) { $0[0] + $0[1] }, GradCheckCase(inputs: [nc, c.transposed().contiguous()]) { $0[0] + $0[1] }],
            "sub": [GradCheckCase(inputs: [a, c]) { $0[0] - $0[1] }],
            "mul": [GradCheckCase(inputs: [a, b]) { $0[0] * $0[1] }, GradCheckCase(inputs: [nc, nc]) { $0[0] * $0[1] }],
            "div": [GradCheckCase(inputs: [a, posB]) { $0[0] / $0[1] }],
            "pow": [GradCheckCase(inputs: [pos, b]) { $0[0].pow($0[1]) }, GradCheckCase(inputs: [a]) { $0[0].pow(3) }],
            "maximum": [GradCheckCase(inputs: [a, b]) { Tensor.maximum($0[0], $0[1]) }],
            "minimum": [GradCheckCase(inputs: [a, c]) { Tensor.minimum($0[0], $0[1]) }],
            "where": [GradCheckCase(inputs: [a, b]) { Tensor.where($0[0].gt(0), $0[0], $0[1]) }],
            "batchNorm": [
                GradCheckCase(inputs: [randInput([4, 3, 2, 3]), randInput([3], low: 0.5, high: 2), randInput([3])]) {
                    $0[0].batchNorm(weight: $0[1], bias: $0[2], eps: 1e-5).output },
                GradCheckCase(inputs: [randInput([5, 4], contiguous: false)]) { $0[0].batchNorm(weight: nil, bias: nil, eps: 1e-3).output },
            ],
            "to": [GradCheckCase(inputs: [a], atol: 1e-3, rtol: 1e-3, eps: 1e-3) { $0[0].to(.float32).to(.float64) * 2 }],
            // A checkpointed segment nested in ordinary ops; both inputs used twice inside.
            "checkpoint": [GradCheckCase(inputs: [a, randInput([4, 2])]) { xs in
                let h = checkpoint([xs[0] * 1.5, xs[1]]) { ys in (ys[0].matmul(ys[1])).tanh() * ys[0].sum() + ys[1].sum() }
                return h.sigmoid()
            }],
        ]
    }
}
