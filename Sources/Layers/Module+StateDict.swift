import TensorCore

/// A state dict that does not fit a module: the message names the key and both values.
public struct StateDictError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Module {
    /// Parameters and buffers by dotted name (PyTorch's `state_dict()`), detached.
    public func stateDict() -> [(String, Tensor)] {
        namedParameters().map { ($0.0, $0.1.value.detached()) } + namedBuffers().map { ($0.0, $0.1.value) }
    }

    /// Copies values from `dict` into parameters and buffers in place.
    ///
    /// Shapes must match exactly; dtypes are converted (a Float16 checkpoint loads into a
    /// Float32 model). With `strict`, missing and unexpected keys are errors. Nothing is
    /// changed unless the whole dict validates.
    public func loadStateDict(_ dict: [String: Tensor], strict: Bool = true) throws(StateDictError) {
        let params = namedParameters(), buffers = namedBuffers()
        var expected: [String: [Int]] = [:]
        for (k, p) in params { expected[k] = p.shape }
        for (k, b) in buffers { expected[k] = b.value.shape }
        for (k, shape) in expected.sorted(by: { $0.key < $1.key }) {
            guard let t = dict[k] else {
                if strict { throw StateDictError("checkpoint is missing '\(k)' (expected shape \(shapeString(shape)))") }
                continue
            }
            guard t.shape == shape else {
                throw StateDictError("checkpoint layer '\(k)': expected shape \(shapeString(shape)), found \(shapeString(t.shape))")
            }
        }
        if strict {
            let unexpected = dict.keys.filter { expected[$0] == nil }.sorted()
            if !unexpected.isEmpty {
                throw StateDictError("checkpoint has unexpected keys \(unexpected) (not in this model)")
            }
        }
        noGrad {
            for (k, p) in params { if let t = dict[k] { p.value.copy_(t) } }
            for (k, b) in buffers {
                if let t = dict[k] {
                    b.value = t.dtype == b.value.dtype ? t.contiguous().detached() : t.to(b.value.dtype).detached()
                }
            }
        }
    }
}
