import TensorCore

/// Distinct values (a seeded random permutation of 0..<n, scaled) so max pooling has no
/// ties and finite differences of size eps never change which element wins.
func permutationInput(_ shape: [Int], scale: Double = 0.1, seed: UInt64 = 5) -> Tensor {
    let n = shape.reduce(1, *)
    let gen = Generator(seed: seed)
    var values = (0..<n).map { Double($0) * scale - Double(n) * scale / 2 }
    for i in stride(from: n - 1, to: 0, by: -1) { values.swapAt(i, gen.nextInt(below: i + 1)) }
    return try! Tensor(values, shape: shape)
}

extension GradChecks {
    /// matmul (2-D, batched with broadcasting, 1-D operands, transposed and strided views),
    /// conv2d (bias, stride, padding, dilation, groups) and 2-D pooling.
    static var linalg: [String: [GradCheckCase]] {
        let a = randInput([3, 4]), b = randInput([4, 2])
        let batched = randInput([2, 3, 4]), shared = randInput([4, 5])
        let b4 = randInput([2, 1, 3, 4]), b3 = randInput([3, 4, 2])
        let v = randInput([4]), m43 = randInput([4, 3]), m34 = randInput([3, 4])
        let ncA = randInput([3, 4], contiguous: false), ncB = randInput([4, 2], contiguous: false)
        let matmul: [GradCheckCase] = [
            GradCheckCase(inputs: [a, b]) { $0[0].matmul($0[1]) },
            GradCheckCase(inputs: [batched, shared]) { $0[0].matmul($0[1]) },
            GradCheckCase(inputs: [b4, b3]) { $0[0].matmul($0[1]) },
            GradCheckCase(inputs: [v, m43]) { $0[0].matmul($0[1]) },
            GradCheckCase(inputs: [m34, v]) { $0[0].matmul($0[1]) },
            GradCheckCase(inputs: [v, v]) { $0[0].matmul($0[1]) },
            GradCheckCase(inputs: [v, batched.transposed()]) { $0[0].matmul($0[1]) },
            GradCheckCase(inputs: [ncA, ncB]) { $0[0].matmul($0[1]) },
            GradCheckCase(inputs: [m43, b]) { $0[0].transposed().matmul($0[1]) },
            GradCheckCase(inputs: [a, randInput([2, 4])]) { $0[0].matmul($0[1].transposed()) },
        ]

        let x = randInput([2, 2, 5, 5]), w = randInput([3, 2, 3, 3]), bias = randInput([3])
        let conv2d: [GradCheckCase] = [
            GradCheckCase(inputs: [x, w, bias]) { $0[0].conv2d($0[1], bias: $0[2]) },
            GradCheckCase(inputs: [randInput([1, 2, 5, 6]), w, bias]) {
                $0[0].conv2d($0[1], bias: $0[2], stride: (2, 2), padding: (1, 1))
            },
            GradCheckCase(inputs: [randInput([1, 1, 6, 7]), randInput([2, 1, 2, 2])]) {
                $0[0].conv2d($0[1], stride: (1, 2), padding: (1, 0), dilation: (2, 2))
            },
            GradCheckCase(inputs: [randInput([1, 4, 4, 4]), randInput([4, 2, 2, 2]), randInput([4])]) {
                $0[0].conv2d($0[1], bias: $0[2], stride: (1, 2), padding: (0, 1), groups: 2)
            },
            // Depthwise, non-contiguous input.
            GradCheckCase(inputs: [randInput([1, 3, 4, 4], contiguous: false), randInput([3, 1, 3, 3])]) {
                $0[0].conv2d($0[1], padding: (1, 1), groups: 3)
            },
            // Pointwise (no im2col) with bias.
            GradCheckCase(inputs: [randInput([2, 3, 3, 2]), randInput([2, 3, 1, 1]), randInput([2])]) {
                $0[0].conv2d($0[1], bias: $0[2])
            },
        ]

        let maxPool2d: [GradCheckCase] = [
            GradCheckCase(inputs: [permutationInput([1, 2, 7, 7])]) { $0[0].maxPool2d(kernel: (3, 3), stride: (2, 2)) },
            GradCheckCase(inputs: [permutationInput([2, 1, 5, 6], seed: 6)]) {
                $0[0].maxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1))
            },
            GradCheckCase(inputs: [permutationInput([2, 4, 4], seed: 8)]) { $0[0].maxPool2d(kernel: (2, 2)) },
        ]

        let avgPool2d: [GradCheckCase] = [
            GradCheckCase(inputs: [randInput([1, 2, 5, 5])]) { $0[0].avgPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1)) },
            GradCheckCase(inputs: [randInput([1, 2, 5, 6])]) {
                $0[0].avgPool2d(kernel: (3, 2), stride: (2, 2), padding: (1, 1), countIncludePad: false)
            },
            GradCheckCase(inputs: [randInput([1, 1, 6, 6], contiguous: false)]) {
                $0[0].avgPool2d(kernel: (3, 3), stride: (2, 2), ceilMode: true)
            },
        ]

        let linear: [GradCheckCase] = [
            GradCheckCase(inputs: [a, randInput([5, 4]), randInput([5])]) { $0[0].linear($0[1], bias: $0[2]) },
            GradCheckCase(inputs: [batched, randInput([2, 4])]) { $0[0].linear($0[1]) },
            GradCheckCase(inputs: [ncA, randInput([2, 4])]) { $0[0].linear($0[1]) },
            // The weight used twice: one contribution fused into .grad, the other added by the engine.
            GradCheckCase(inputs: [a, randInput([4, 4])]) { $0[0].linear($0[1]).linear($0[1]) },
            GradCheckCase(inputs: [a, m34]) { $0[0].linear($0[1]) + $0[0].matmul($0[1].transposed()) },
        ]
        return ["matmul": matmul, "linear": linear, "conv2d": conv2d, "maxPool2d": maxPool2d, "avgPool2d": avgPool2d]
    }
}
