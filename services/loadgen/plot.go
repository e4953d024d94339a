package loadgen

import (
	"fmt"
	"image/color"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	blue   = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	red    = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	grey   = color.RGBA{R: 127, G: 127, B: 127, A: 255}
	green  = color.RGBA{R: 44, G: 160, B: 44, A: 255}
)

func line(p *plot.Plot, xys plotter.XYs, c color.Color, dashed bool, legend string) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = c
	l.Width = vg.Points(1.5)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	p.Add(l)
	if legend != "" {
		p.Legend.Add(legend, l)
	}
	return nil
}

func linePoints(p *plot.Plot, xys plotter.XYs, c color.Color, shape draw.GlyphDrawer, legend string) error {
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color, s.Color, s.Shape = c, c, shape
	l.Width = vg.Points(1.5)
	p.Add(l, s)
	if legend != "" {
		p.Legend.Add(legend, l, s)
	}
	return nil
}

// PlotTimeline draws a run bucket by bucket (a second unless TimelineStepS
// says otherwise): throughput on top, replication lag and write latency below.
func PlotTimeline(r *RunResult, file string) error {
	step := r.TimelineStepS
	if step <= 0 {
		step = 1
	}
	top := plot.New()
	top.Title.Text = fmt.Sprintf("%s: writes per second (target %s)", r.Name, rateText(r.TargetRate))
	top.Y.Label.Text = "2xx writes/s"
	top.Y.Min = 0
	bottom := plot.New()
	bottom.Title.Text = fmt.Sprintf("replication lag (2xx → score applied) and write latency, per %s", bucketText(step))
	bottom.X.Label.Text = "seconds since start"
	bottom.Y.Label.Text = "ms (log)"
	bottom.Y.Scale = plot.LogScale{}
	bottom.Y.Tick.Marker = plot.LogTicks{Prec: -1}

	var thr, errs, lag50, lag99, lat99 plotter.XYs
	for _, s := range r.Timeline {
		x := (float64(s.T) + 0.5) * step
		thr = append(thr, plotter.XY{X: x, Y: float64(s.Writes) / step})
		errs = append(errs, plotter.XY{X: x, Y: float64(s.Errors) / step})
		if s.Writes > 0 {
			lag50 = append(lag50, plotter.XY{X: x, Y: floor(s.LagP50MS)})
			lag99 = append(lag99, plotter.XY{X: x, Y: floor(s.LagP99MS)})
			lat99 = append(lat99, plotter.XY{X: x, Y: floor(s.LatP99MS)})
		}
	}
	if len(thr) < 2 || len(lag50) < 2 {
		return fmt.Errorf("plot %s: too few seconds", r.Name)
	}
	if err := line(top, thr, blue, false, "writes/s"); err != nil {
		return err
	}
	if r.TargetRate > 0 {
		if err := line(top, plotter.XYs{{X: 0, Y: r.TargetRate}, {X: thr[len(thr)-1].X, Y: r.TargetRate}}, grey, true, "target"); err != nil {
			return err
		}
	}
	if r.Errors > 0 {
		if err := line(top, errs, red, false, "errors/s"); err != nil {
			return err
		}
	}
	top.Legend.Top = false
	top.Legend.Left = true
	if err := line(bottom, lag50, blue, false, "lag p50"); err != nil {
		return err
	}
	if err := line(bottom, lag99, orange, false, "lag p99"); err != nil {
		return err
	}
	if err := line(bottom, lat99, grey, true, "write latency p99"); err != nil {
		return err
	}
	bottom.Legend.Top = true
	bottom.Add(plotter.NewGrid())
	top.X.Min, top.X.Max = 0, float64(len(r.Timeline))*step
	bottom.X.Min, bottom.X.Max = 0, float64(len(r.Timeline))*step
	return saveTiles(file, 9*vg.Inch, 7*vg.Inch, top, bottom)
}

// CurvePoint is one rate step of a lag-versus-rate curve.
type CurvePoint struct {
	Throughput float64
	P50, P95   float64 // ms
	P99        float64
	Sustained  bool
}

// PlotCurve draws replication lag against the achieved write rate, joining
// the steps in the order they ran (rising target rates).
func PlotCurve(title string, pts []CurvePoint, file string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "achieved write rate (2xx writes/s)"
	p.Y.Label.Text = "replication lag, ms (log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	var a, b, c plotter.XYs
	for _, pt := range pts {
		a = append(a, plotter.XY{X: pt.Throughput, Y: floor(pt.P50)})
		b = append(b, plotter.XY{X: pt.Throughput, Y: floor(pt.P95)})
		c = append(c, plotter.XY{X: pt.Throughput, Y: floor(pt.P99)})
	}
	if len(a) == 0 {
		return fmt.Errorf("plot %s: no points", title)
	}
	if err := linePoints(p, a, blue, draw.CircleGlyph{}, "p50"); err != nil {
		return err
	}
	if err := linePoints(p, b, green, draw.SquareGlyph{}, "p95"); err != nil {
		return err
	}
	if err := linePoints(p, c, orange, draw.TriangleGlyph{}, "p99"); err != nil {
		return err
	}
	xmax := 0.0
	for _, pt := range pts {
		xmax = max(xmax, pt.Throughput)
	}
	// The goals at half the maximum rate: p50 ≤ 5 ms, p99 ≤ 50 ms.
	if err := line(p, plotter.XYs{{X: 0, Y: 5}, {X: xmax, Y: 5}}, blue, true, "goal p50 5 ms"); err != nil {
		return err
	}
	if err := line(p, plotter.XYs{{X: 0, Y: 50}, {X: xmax, Y: 50}}, orange, true, "goal p99 50 ms"); err != nil {
		return err
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.X.Min = 0
	p.Add(plotter.NewGrid())
	return p.Save(8*vg.Inch, 5*vg.Inch, file)
}

func saveTiles(file string, w, h vg.Length, plots ...*plot.Plot) error {
	img := vgimg.New(w, h)
	dc := draw.New(img)
	grid := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		grid[i] = []*plot.Plot{p}
	}
	canvases := plot.Align(grid, draw.Tiles{Rows: len(plots), Cols: 1, PadY: vg.Points(8), PadTop: vg.Points(4), PadBottom: vg.Points(4),
		PadLeft: vg.Points(4), PadRight: vg.Points(8)}, dc)
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// floor keeps values positive for a log axis.
func floor(ms float64) float64 { return math.Max(ms, 0.1) }

func rateText(r float64) string {
	if r <= 0 {
		return "closed loop"
	}
	return fmt.Sprintf("%.0f/s", r)
}

func bucketText(step float64) string {
	if step == 1 {
		return "second"
	}
	return fmt.Sprintf("%g ms", step*1000)
}
