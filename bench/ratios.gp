# ratios.gp: bar chart of Turnpike/peer ratios for docs/benchmarks.png (called by bench/run).
# Variables (gnuplot -e): term (png or pngcairo), datafile, outfile, subtitle, nbars (rows in datafile).
# datafile rows: "label" ratio goal "bar label" label-height; ? marks a missing ratio or no goal.
if (!exists("nbars")) nbars = 5
# About 170 px per bar, so that the labels under them do not run into each other.
width = nbars * 170 + 200
if (width < 1300) width = 1300
if (term eq 'pngcairo') {
    set terminal pngcairo size width,480 font "sans,10"
} else {
    set terminal png size width,480
}
set output outfile
set datafile missing "?"
set title "Turnpike / peer (higher is better)\n{/*0.8 ".subtitle."}"
if (term ne 'pngcairo') { set title "Turnpike / peer (higher is better), ".subtitle }
set ylabel "ratio"
set yrange [0:*]
set xrange [-0.6:nbars - 0.4]
set offsets 0, 0, 0.4, 0
set style fill solid 0.75 border -1
set boxwidth 0.55
set grid ytics lc rgb "#dddddd"
set key outside right top
set xtics nomirror
set ytics nomirror
set border 3
plot datafile using 0:2:xtic(1) with boxes lc rgb "#4477aa" title "measured", \
     '' using 0:3 with points pt 5 ps 1.6 lc rgb "#cc3311" title "goal", \
     '' using 0:5:4 with labels offset 0,0.8 notitle, \
     1 with lines dt 2 lc rgb "#888888" title "parity"
