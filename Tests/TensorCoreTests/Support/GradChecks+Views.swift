import TensorCore

extension GradChecks {
    /// Views, pads and joins, on contiguous and non-contiguous inputs.
    static var views: [String: [GradCheckCase]] {
        let a = randInput([2, 3, 4]), nc = randInput([3, 4], contiguous: false)
        let col = randInput([3, 1]), v = randInput([5])
        let b = randInput([2, 2, 4]), c = randInput([2, 1, 4], contiguous: true, seed: 3)
        return [
            "reshape": [
                GradCheckCase(inputs: [a]) { $0[0].reshaped([6, 4]) * $0[0].reshaped([6, 4]) },
                GradCheckCase(inputs: [nc]) { $0[0].reshaped([-1]) },                 // non-contiguous: copies
                GradCheckCase(inputs: [a]) { $0[0].flattened(startDim: 1).unsqueezed(dim: 0).squeezed() },
            ],
            "permute": [
                GradCheckCase(inputs: [a]) { $0[0].permuted([2, 0, 1]) * 2.0 },
                GradCheckCase(inputs: [nc]) { $0[0].T.contiguous() },
            ],
            "expand": [
                GradCheckCase(inputs: [col]) { $0[0].expand([2, 3, 4]) },
                GradCheckCase(inputs: [v, nc]) { $0[0].reshaped([1, 5]).expand([3, 5]) * 1.5 + $0[1].sum() },
            ],
            "narrow": [
                GradCheckCase(inputs: [a]) { $0[0].narrowed(dim: 1, start: 1, length: 2) },
                GradCheckCase(inputs: [nc]) { $0[0].narrowed(dim: -1, start: 2, length: 2) * $0[0].narrowed(dim: -1, start: 0, length: 2) },
                GradCheckCase(inputs: [a]) { $0[0].slice(dim: 2, 0..<4, step: 3) },
            ],
            "pad": [
                GradCheckCase(inputs: [a]) { $0[0].padded(dim: 1, before: 1, after: 2) },
                GradCheckCase(inputs: [nc]) { $0[0].padded(dim: -1, before: 0, after: 3) * 2.0 },
            ],
            "contiguous": [
                GradCheckCase(inputs: [nc]) { $0[0].contiguous() * $0[0].contiguous() },
                GradCheckCase(inputs: [a]) { $0[0].permuted([1, 2, 0]).contiguous() },
            ],
            "cat": [
                GradCheckCase(inputs: [a, b, c]) { Tensor.cat([$0[0], $0[1], $0[2]], dim: 1) },
                GradCheckCase(inputs: [nc, col]) { Tensor.cat([$0[0], $0[1], $0[0]], dim: -1) },   // a repeated input accumulates
            ],
            "stack": [
                GradCheckCase(inputs: [nc, randInput([3, 4], seed: 9)]) { Tensor.stack([$0[0], $0[1]], dim: 1) },
                GradCheckCase(inputs: [v]) { Tensor.stack([$0[0], $0[0] * 2.0, $0[0]], dim: -1) },
            ],
            "split": [
                GradCheckCase(inputs: [a]) { x in
                    let p = x[0].split([1, 0, 2], dim: 1)
                    return Tensor.cat([p[2] * 3.0, p[0]], dim: 1)
                },
                GradCheckCase(inputs: [nc]) { x in
                    let p = x[0].split(size: 3, dim: 1)
                    return p[0] * p[1].expand([3, 3])
                },
                GradCheckCase(inputs: [a]) { x in
                    let p = x[0].chunk(3, dim: 2)
                    return p[0] + p[1] * 2.0
                },
            ],
        ]
    }
}
