import ArgumentParser
import Layers
import TensorCore

/// `loom norm-precision`: the low-precision argument of Hoffer et al. 2018 ("Norm matters"),
/// shown on data: batch-norm statistics computed in Float16 for L2, L1 and L∞ norms.
struct NormPrecision: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "norm-precision",
        abstract: "Compute BatchNorm statistics in Float16 vs Float32 for L2, L1 and L∞ norms (Hoffer et al. 2018).")
    @Option(help: "Elements per channel.") var count: Int = 4096
    @Option(help: "Standard deviation of the activations (L2's squares overflow Float16 above ~256).") var std: Double = 300
    @Option(help: "Channels.") var channels: Int = 4
    @Option(help: "Random seed.") var seed: UInt64 = 0

    func run() throws {
        guard count > 1, channels > 0, std > 0 else { throw ValidationError("--count > 1, --channels > 0 and --std > 0 are required") }
        let x = Tensor.randn([count, channels], std: std, generator: Generator(seed: seed))
        print("activations: \(count) per channel x \(channels) channels, N(0, \(std)^2); scale per channel (Float16 vs Float32):")
        for (name, kind) in [("L2", BatchNormKind.l2), ("L1", .l1), ("L∞ (top-k)", .linf(topK: nil))] {
            let half = BatchNorm.statistics(x, kind: kind, computeIn: .float16).scale.doubles()
            let full = BatchNorm.statistics(x, kind: kind, computeIn: .float32).scale.doubles()
            let fmt = { (v: [Double]) in v.map { $0.isFinite ? String(format: "%.2f", $0) : "\($0)" }.joined(separator: ", ") }
            let worst = zip(half, full).map { $0.isFinite ? abs($0 - $1) / $1 : .infinity }.max() ?? 0
            print("  \(name.padding(toLength: 11, withPad: " ", startingAt: 0)) float16 [\(fmt(half))]  float32 [\(fmt(full))]  "
                  + (worst.isFinite ? String(format: "max rel. diff %.2e", worst) : "OVERFLOW in float16"))
        }
    }
}
