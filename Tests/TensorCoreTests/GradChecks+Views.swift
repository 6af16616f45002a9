import TensorCore

extension GradChecks {
    static var views: [String: [GradCheckCase]] {
        [:]
    }
}
