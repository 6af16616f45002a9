/// The op catalogue: every op Loom offers, its dtypes and whether it is differentiable.
///
/// `loom ops` prints it; the gradient-check suite fails if a differentiable op here has
/// no finite-difference check; `Tensor.recording` asserts (in debug builds) that every
/// recorded op is listed, so the catalogue cannot silently drift from the code.
public struct OpInfo: Sendable, Hashable {
    public let name: String
    public let category: String
    public let dtypes: [DType]
    public let differentiable: Bool
}

public enum OpRegistry {
    static let floats: [DType] = [.float32, .float64, .float16, .bfloat16]
    static let numeric: [DType] = [.float32, .float64, .float16, .bfloat16, .int32, .int64, .uint8]
    static let all_: [DType] = DType.allCases

    static func op(_ name: String, _ category: String, _ dtypes: [DType], grad: Bool) -> OpInfo {
        OpInfo(name: name, category: category, dtypes: dtypes, differentiable: grad)
    }

    /// Every op, in catalogue order.
    public static let ops: [OpInfo] = {
        var list: [OpInfo] = []
        for n in ["zeros", "ones", "full", "arange", "linspace", "eye", "rand", "randn", "fromArray"] {
            list.append(op(n, "creation", n == "rand" || n == "randn" || n == "linspace" ? floats : all_, grad: false))
        }
        for n in ["reshape", "permute", "expand", "narrow", "pad", "contiguous", "to"] {
            list.append(op(n, "view", all_, grad: true))
        }
        for n in ["cat", "stack", "split"] { list.append(op(n, "join", all_, grad: true)) }
        for n in ["neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "relu",
                  "leakyRelu", "elu", "gelu", "clamp"] {
            list.append(op(n, "unary", floats, grad: true))
        }
        list.append(op("sign", "unary", floats, grad: false))
        for n in ["add", "sub", "mul"] { list.append(op(n, "binary", numeric, grad: true)) }
        for n in ["div", "pow", "maximum", "minimum"] { list.append(op(n, "binary", floats, grad: true)) }
        for n in ["eq", "ne", "lt", "le", "gt", "ge"] { list.append(op(n, "compare", numeric, grad: false)) }
        list.append(op("where", "select", all_, grad: true))
        for n in ["sum", "mean", "var", "maxAlong", "minAlong", "amax", "logsumexp", "norm"] {
            list.append(op(n, "reduce", floats, grad: true))
        }
        list.append(op("argmax", "reduce", floats, grad: false))
        list.append(op("argmin", "reduce", floats, grad: false))
        for n in ["softmax", "logSoftmax"] { list.append(op(n, "reduce", floats, grad: true)) }
        list.append(op("batchNorm", "norm", floats, grad: true))
        for n in ["matmul", "linear", "conv2d", "maxPool2d", "avgPool2d"] { list.append(op(n, "linalg", floats, grad: true)) }
        for n in ["gather", "scatterAdd", "indexSelect", "embedding"] { list.append(op(n, "index", floats, grad: true)) }
        list.append(op("oneHot", "index", [.int64, .int32], grad: false))
        list.append(op("dropoutMask", "random", floats, grad: false))
        list.append(op("topk", "sort", floats, grad: true))
        list.append(op("sort", "sort", floats, grad: true))
        list.append(op("cumsum", "scan", floats, grad: true))
        list.append(op("checkpoint", "autograd", floats, grad: true))
        return list
    }()

    /// Names of differentiable ops (each needs a finite-difference check).
    public static var differentiableOps: [String] { ops.filter(\.differentiable).map(\.name) }

    static let names: Set<String> = Set(ops.map(\.name))

    static func assertRegistered(_ name: String) {
        precondition(names.contains(name), "op '\(name)' records autograd history but is not in OpRegistry.ops")
    }
}
