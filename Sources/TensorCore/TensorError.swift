/// Errors from bad input: shapes, dtypes, counts and arguments that came from outside.
///
/// Messages name the op, the bad value and what was expected, e.g.
/// `matmul: [2, 3] x [4, 5]: inner dimensions 3 and 4 differ`.
public struct TensorError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable { case shape, dtype, count, argument, autograd }
    public let kind: Kind
    public let op: String
    public let message: String

    public init(_ kind: Kind, op: String, _ message: String) {
        self.kind = kind
        self.op = op
        self.message = message
    }

    public var description: String { "\(op): \(message)" }

    static func shape(_ op: String, _ message: String) -> TensorError { TensorError(.shape, op: op, message) }
    static func dtype(_ op: String, _ message: String) -> TensorError { TensorError(.dtype, op: op, message) }
    static func argument(_ op: String, _ message: String) -> TensorError { TensorError(.argument, op: op, message) }
}

/// Formats a shape as `[2, 3]`.
@inlinable
public func shapeString(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }

/// Traps with the error's message: used by ops whose bad input is a programming error
/// inside a model (DESIGN.md, Errors). The throwing rule functions in `ShapeRules`
/// give the same message to code that wants to recover.
@usableFromInline
func check(_ body: () throws(TensorError) -> Void) {
    do { try body() } catch { preconditionFailure(error.description) }
}

@usableFromInline
func checked<R>(_ body: () throws(TensorError) -> R) -> R {
    do { return try body() } catch { preconditionFailure(error.description) }
}
