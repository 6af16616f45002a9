import ArgumentParser
import TensorCore
import TensorKernels

/// `loom demo`: fits a small linear model by gradient descent with autograd.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Fit a tiny linear regression with autograd (a smoke test of the core).")

    @Option(help: "Gradient-descent steps.") var steps: Int = 200
    @Option(help: "Random seed.") var seed: UInt64 = 0

    func validate() throws {
        guard steps > 0 else { throw ValidationError("--steps \(steps): expected a positive number of steps") }
    }

    func run() {
        let gen = Generator(seed: seed)
        let trueW = try! Tensor([2.0, -3.0, 0.5] as [Float], shape: [3, 1])
        let x = Tensor.randn([256, 3], generator: gen)
        let y = x.matmul(trueW) + Tensor.randn([256, 1], std: 0.01, generator: gen)
        var w = Tensor.zeros([3, 1]).requiringGrad()
        print("OpenBLAS core: \(BlasInfo.coreName), threads: \(BlasInfo.threads)")
        for step in 0..<steps {
            let loss = ((x.matmul(w) - y).pow(2)).mean()
            loss.backward()
            let g = w.grad!
            noGrad { w.sub_(g * 0.1) }
            w.zeroGrad()
            if step % 50 == 0 || step == steps - 1 {
                print("step \(step): loss \(String(format: "%.6f", loss.item()))")
            }
        }
        print("learned w = \(w.detached().scalars(as: Float.self).map { String(format: "%.3f", $0) }) (true [2, -3, 0.5])")
        print(Memory.stats())
    }
}
