package measure

// Points is the score rule on exact cents, what the benchmark and the
// reliability suite expect score to compute (the same as score.Points, written
// again here on purpose so the check is independent of the code it checks):
// income floor(value/50), asset floor(value/20), debt -floor(value/20).
func Points(kind string, cents int64) int64 {
	switch kind {
	case "income":
		return cents / 5000
	case "asset":
		return cents / 2000
	case "debt":
		return -(cents / 2000)
	}
	return 0
}
