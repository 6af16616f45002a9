import TensorCore

/// Conv rows for `loom bench`: LeNet- and AlexNet-shaped layers, forward and forward+backward.
/// The same layers are in Benchmarks/torch_ops.py (keep the two lists in step).
func convBenchRows(_ suite: BenchSuite) -> [BenchRow] {
    // name, N, C, H, W, O, k, stride, pad, groups
    let layers: [(String, Int, Int, Int, Int, Int, Int, Int, Int, Int)] = [
        ("lenet conv1 b64 1x28x28 -> 6 k5 p2", 64, 1, 28, 28, 6, 5, 1, 2, 1),
        ("lenet conv2 b64 6x14x14 -> 16 k5", 64, 6, 14, 14, 16, 5, 1, 0, 1),
        ("convnet-bn conv2 b128 32x28x28 -> 32 k3 p1", 128, 32, 28, 28, 32, 3, 1, 1, 1),
        ("deepconvnet b32 16x28x28 -> 16 k3 p1", 32, 16, 28, 28, 16, 3, 1, 1, 1),
        ("alexnet conv1 b8 3x224x224 -> 96 k11 s4 p2", 8, 3, 224, 224, 96, 11, 4, 2, 1),
        ("alexnet conv2 b8 96x27x27 -> 256 k5 p2 g2", 8, 96, 27, 27, 256, 5, 1, 2, 2),
        ("alexnet conv3 b8 256x13x13 -> 384 k3 p1", 8, 256, 13, 13, 384, 3, 1, 1, 1),
    ]
    var rows: [BenchRow] = []
    for (name, n, c, h, w, o, k, s, p, g) in layers {
        let x = Tensor.randn([n, c, h, w]), wt = Tensor.randn([o, c / g, k, k]), b = Tensor.randn([o])
        let out = noGrad { x.conv2d(wt, bias: b, stride: (s, s), padding: (p, p), groups: g) }
        let flops = 2.0 * Double(n * o * out.shape[2] * out.shape[3] * (c / g) * k * k)
        let fname = "conv2d fwd " + name
        if suite.wanted(fname) {
            let t = medianSeconds(repeats: suite.repeats) {
                _ = noGrad { x.conv2d(wt, bias: b, stride: (s, s), padding: (p, p), groups: g) }
            }
            rows.append(BenchRow(name: fname, seconds: t, work: flops, unit: "GFLOP/s"))
        }
        let bname = "conv2d fwd+bwd " + name
        if suite.wanted(bname) {
            let xr = x.requiringGrad(), wr = wt.requiringGrad(), br = b.requiringGrad()
            let gy = Tensor.randn(out.shape)
            let t = medianSeconds(repeats: suite.repeats) {
                let y = xr.conv2d(wr, bias: br, stride: (s, s), padding: (p, p), groups: g)
                y.backward(gy)
                xr.zeroGrad(); wr.zeroGrad(); br.zeroGrad()
            }
            rows.append(BenchRow(name: bname, seconds: t, work: 3 * flops, unit: "GFLOP/s"))
        }
    }
    return rows
}
