import Layers
import TensorCore

/// A per-layer table of a model: output shape, parameters, FLOPs and activation bytes,
/// measured by running one forward pass in eval mode and tracing the leaf modules.
public struct ModelSummary: Sendable {
    public struct Row: Sendable {
        public let name: String
        public let type: String
        public let outputShape: [Int]
        public let parameters: Int
        /// Multiply-adds count 2 FLOPs; per sample.
        public let flops: Int
        /// Bytes of the layer's output per sample.
        public let activationBytes: Int
    }

    public let rows: [Row]
    public var totalParameters: Int
    public var totalFlops: Int { rows.reduce(0) { $0 + $1.flops } }
    public var totalActivationBytes: Int { rows.reduce(0) { $0 + $1.activationBytes } }

    /// Traces `model` on one zero sample of `inputShape` ([C, H, W]).
    public init(model: Module, inputShape: [Int]) {
        let names = Dictionary(model.namedModules().map { (ObjectIdentifier($0.1), $0.0) }, uniquingKeysWith: { a, _ in a })
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        let trace = ModuleTrace()
        _ = ModuleTrace.$current.withValue(trace) { noGrad { model(Tensor.zeros([1] + inputShape)) } }
        var rows: [Row] = []
        for call in trace.calls where call.module.namedChildren().isEmpty {
            let m = call.module
            let params = m.ownParameters().reduce(0) { $0 + $1.1.value.count }
            let outCount = call.outputShape.reduce(1, *)
            var flops = 0
            if let c = m as? Conv2d {
                flops = 2 * outCount * (c.inChannels / c.groups) * c.kernelSize.0 * c.kernelSize.1
            } else if let l = m as? Linear {
                flops = 2 * outCount * l.inFeatures
            } else if !(m is Flatten || m is Identity || m is Dropout) {
                flops = outCount  // elementwise / pooling / normalisation: about one op per output
            }
            rows.append(Row(name: names[ObjectIdentifier(m)] ?? "?", type: String(describing: type(of: m)),
                            outputShape: Array(call.outputShape.dropFirst()), parameters: params, flops: flops,
                            activationBytes: outCount * call.outputDType.byteSize))
        }
        self.rows = rows
        self.totalParameters = model.parameterCount
    }

    /// The table as text.
    public var table: String {
        var lines = [pad("layer", 24) + pad("type", 20) + pad("output", 18) + lpad("params", 12) + lpad("FLOPs", 14) + lpad("activations", 14)]
        for r in rows {
            lines.append(pad(r.name, 24) + pad(r.type, 20) + pad(shapeString(r.outputShape), 18) + lpad("\(r.parameters)", 12)
                         + lpad(grouped(r.flops), 14) + lpad(formatBytes(r.activationBytes), 14))
        }
        lines.append("total: \(grouped(totalParameters)) parameters, \(grouped(totalFlops)) FLOPs per sample, "
                     + "\(formatBytes(totalActivationBytes)) of layer outputs per sample")
        return lines.joined(separator: "\n")
    }
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s.padding(toLength: n, withPad: " ", startingAt: 0) }
func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }

/// 1234567 -> "1,234,567".
public func grouped(_ n: Int) -> String {
    let s = String(abs(n))
    var out = ""
    for (i, ch) in s.enumerated() {
        if i > 0 && (s.count - i) % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return (n < 0 ? "-" : "") + out
}
