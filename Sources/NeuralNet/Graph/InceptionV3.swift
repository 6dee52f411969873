/// `keras.applications.InceptionV3(include_top=False)` plus the GAP + Dense head,
/// following `keras/src/applications/inception_v3.py` line by line. Its
/// `conv2d_bn` layers have automatic names, so the k-th one created binds to
/// `conv2d_<k>` / `batch_normalization_<k>` (k from 0).
public enum InceptionV3 {
    public static func graph(height: Int, width: Int, classes: Int) throws(NeuralNetError) -> Graph {
        var net = Builder()
        let input = net.b.buffer(height: height, width: width, channels: 3)

        var x = try net.convBN(input, 32, 3, 3, stride: 2, padding: .valid)
        x = try net.convBN(x, 32, 3, 3, padding: .valid)
        x = try net.convBN(x, 64, 3, 3)
        x = try net.b.pool(.max, x, size: 3, stride: 2, padding: .valid)
        x = try net.convBN(x, 80, 1, 1, padding: .valid)
        x = try net.convBN(x, 192, 3, 3, padding: .valid)
        x = try net.b.pool(.max, x, size: 3, stride: 2, padding: .valid)

        // mixed 0, 1, 2: 35 x 35 at 299 input.
        for poolFilters in [32, 64, 64] {
            let out = net.b.concatenation(height: x.height, width: x.width, channels: [64, 64, 96, poolFilters])
            try net.convBN(x, 64, 1, 1, into: out[0])
            let b5 = try net.convBN(x, 48, 1, 1)
            try net.convBN(b5, 64, 5, 5, into: out[1])
            var b3 = try net.convBN(x, 64, 1, 1)
            b3 = try net.convBN(b3, 96, 3, 3)
            try net.convBN(b3, 96, 3, 3, into: out[2])
            let pool = try net.averagePool(x)
            try net.convBN(pool, poolFilters, 1, 1, into: out[3])
            x = net.whole(out)
        }

        // mixed 3: grid reduction.
        do {
            let (h, w) = ((x.height - 3) / 2 + 1, (x.width - 3) / 2 + 1)
            let out = net.b.concatenation(height: h, width: w, channels: [384, 96, x.channels])
            try net.convBN(x, 384, 3, 3, stride: 2, padding: .valid, into: out[0])
            var b3 = try net.convBN(x, 64, 1, 1)
            b3 = try net.convBN(b3, 96, 3, 3)
            try net.convBN(b3, 96, 3, 3, stride: 2, padding: .valid, into: out[1])
            try net.b.pool(.max, x, size: 3, stride: 2, padding: .valid, into: out[2])
            x = net.whole(out)
        }

        // mixed 4, 5, 6, 7: factorised 7x7.
        for mid in [128, 160, 160, 192] {
            let out = net.b.concatenation(height: x.height, width: x.width, channels: [192, 192, 192, 192])
            try net.convBN(x, 192, 1, 1, into: out[0])
            var b7 = try net.convBN(x, mid, 1, 1)
            b7 = try net.convBN(b7, mid, 1, 7)
            try net.convBN(b7, 192, 7, 1, into: out[1])
            var d7 = try net.convBN(x, mid, 1, 1)
            d7 = try net.convBN(d7, mid, 7, 1)
            d7 = try net.convBN(d7, mid, 1, 7)
            d7 = try net.convBN(d7, mid, 7, 1)
            try net.convBN(d7, 192, 1, 7, into: out[2])
            let pool = try net.averagePool(x)
            try net.convBN(pool, 192, 1, 1, into: out[3])
            x = net.whole(out)
        }

        // mixed 8: grid reduction.
        do {
            let (h, w) = ((x.height - 3) / 2 + 1, (x.width - 3) / 2 + 1)
            let out = net.b.concatenation(height: h, width: w, channels: [320, 192, x.channels])
            let b3 = try net.convBN(x, 192, 1, 1)
            try net.convBN(b3, 320, 3, 3, stride: 2, padding: .valid, into: out[0])
            var b7 = try net.convBN(x, 192, 1, 1)
            b7 = try net.convBN(b7, 192, 1, 7)
            b7 = try net.convBN(b7, 192, 7, 1)
            try net.convBN(b7, 192, 3, 3, stride: 2, padding: .valid, into: out[1])
            try net.b.pool(.max, x, size: 3, stride: 2, padding: .valid, into: out[2])
            x = net.whole(out)
        }

        // mixed 9, 10: expanded filter banks; the inner concatenations are runs of the outer one.
        for _ in 0..<2 {
            let out = net.b.concatenation(height: x.height, width: x.width, channels: [320, 384, 384, 384, 384, 192])
            try net.convBN(x, 320, 1, 1, into: out[0])
            let b3 = try net.convBN(x, 384, 1, 1)
            try net.convBN(b3, 384, 1, 3, into: out[1])
            try net.convBN(b3, 384, 3, 1, into: out[2])
            var d3 = try net.convBN(x, 448, 1, 1)
            d3 = try net.convBN(d3, 384, 3, 3)
            try net.convBN(d3, 384, 1, 3, into: out[3])
            try net.convBN(d3, 384, 3, 1, into: out[4])
            let pool = try net.averagePool(x)
            try net.convBN(pool, 192, 1, 1, into: out[5])
            x = net.whole(out)
        }

        let logits = net.b.classifierHead(x, classes: classes)
        return Graph(buffers: net.b.buffers, operations: net.b.operations, input: input, output: logits)
    }

    private struct Builder {
        var b = GraphBuilder()
        var count = 0

        /// `conv2d_bn`: Conv2D without bias, BatchNorm without gamma (epsilon 1e-3), ReLU.
        @discardableResult
        mutating func convBN(
            _ x: TensorView, _ filters: Int, _ rows: Int, _ columns: Int, stride: Int = 1,
            padding: GraphBuilder.PaddingMode = .same, into target: TensorView? = nil
        ) throws(NeuralNetError) -> TensorView {
            defer { count += 1 }
            return try b.conv("conv2d_\(count)", batchNorm: "batch_normalization_\(count)", batchNormHasScale: false,
                              hasBias: false, x, filters: filters, kernel: (rows, columns), stride: stride,
                              padding: padding, into: target)
        }

        mutating func averagePool(_ x: TensorView) throws(NeuralNetError) -> TensorView {
            try b.pool(.averageExcludingPadding, x, size: 3, stride: 1, padding: .same)
        }

        func whole(_ parts: [TensorView]) -> TensorView {
            var view = parts[0]
            view.channels = view.stride
            return view
        }
    }
}
