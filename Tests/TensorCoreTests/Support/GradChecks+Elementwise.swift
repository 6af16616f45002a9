import TensorCore

extension GradChecks {
    /// A Float64 input whose elements keep at least `margin` away from every value in `kinks`
    /// (so finite differences never straddle a kink), optionally non-contiguous.
    static func inputAvoiding(_ shape: [Int], kinks: [Double], margin: Double = 0.1, contiguous: Bool = true, seed: UInt64 = 1) -> Tensor {
        let raw = randInput(shape, low: -2, high: 2, seed: seed).doubles()
        let values = raw.map { v -> Double in
            var x = v
            for k in kinks where Swift.abs(x - k) < margin { x = x < k ? k - margin - 0.05 : k + margin + 0.05 }
            return x
        }
        let dense = try! Tensor(values, shape: shape)
        return contiguous ? dense : nonContiguous(dense)
    }

    /// Unary elementwise functions; inputs stay away from kinks and outside domains.
    static var elementwise: [String: [GradCheckCase]] {
        let a = randInput([3, 4]), nc = randInput([4, 3], contiguous: false), v = randInput([7])
        let pos = randInput([3, 4], low: 0.3, high: 3), posNC = randInput([4, 3], contiguous: false, low: 0.3, high: 3)
        let kinked = inputAvoiding([3, 5], kinks: [0]), kinkedNC = inputAvoiding([5, 3], kinks: [0], contiguous: false)
        let clampIn = inputAvoiding([4, 5], kinks: [-0.5, 0.5]), clampNC = inputAvoiding([5, 4], kinks: [-0.5, 0.5], contiguous: false)
        return [
            "neg": [GradCheckCase(inputs: [a]) { -$0[0] }, GradCheckCase(inputs: [nc]) { -$0[0] * $0[0] }],
            "abs": [GradCheckCase(inputs: [kinked]) { $0[0].abs() }, GradCheckCase(inputs: [kinkedNC]) { $0[0].abs() }],
            "exp": [GradCheckCase(inputs: [a]) { $0[0].exp() }, GradCheckCase(inputs: [nc]) { $0[0].exp() }],
            "log": [GradCheckCase(inputs: [pos]) { $0[0].log() }, GradCheckCase(inputs: [posNC]) { $0[0].log() }],
            "sqrt": [GradCheckCase(inputs: [pos]) { $0[0].sqrt() }, GradCheckCase(inputs: [posNC]) { $0[0].sqrt() }],
            "rsqrt": [GradCheckCase(inputs: [pos]) { $0[0].rsqrt() }, GradCheckCase(inputs: [posNC]) { $0[0].rsqrt() }],
            "sin": [GradCheckCase(inputs: [a]) { $0[0].sin() }, GradCheckCase(inputs: [nc]) { $0[0].sin() }],
            "cos": [GradCheckCase(inputs: [a]) { $0[0].cos() }, GradCheckCase(inputs: [nc]) { $0[0].cos() }],
            "tanh": [GradCheckCase(inputs: [a]) { $0[0].tanh() }, GradCheckCase(inputs: [v]) { $0[0].tanh() * $0[0] }],
            "sigmoid": [GradCheckCase(inputs: [a]) { $0[0].sigmoid() }, GradCheckCase(inputs: [nc]) { $0[0].sigmoid() }],
            "relu": [GradCheckCase(inputs: [kinked]) { $0[0].relu() }, GradCheckCase(inputs: [kinkedNC]) { $0[0].relu() }],
            "leakyRelu": [GradCheckCase(inputs: [kinked]) { $0[0].leakyRelu(0.1) }, GradCheckCase(inputs: [kinkedNC]) { $0[0].leakyRelu() }],
            "elu": [GradCheckCase(inputs: [kinked]) { $0[0].elu() }, GradCheckCase(inputs: [kinkedNC]) { $0[0].elu(0.5) }],
            "gelu": [GradCheckCase(inputs: [a]) { $0[0].gelu() }, GradCheckCase(inputs: [nc]) { $0[0].gelu() }],
            "clamp": [
                GradCheckCase(inputs: [clampIn]) { $0[0].clamp(min: -0.5, max: 0.5) },
                GradCheckCase(inputs: [clampNC]) { $0[0].clamp(min: -0.5) },
                GradCheckCase(inputs: [clampNC]) { $0[0].clamp(max: 0.5) * 3.0 },
            ],
        ]
    }
}
