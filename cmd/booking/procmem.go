package main

import (
	"bufio"
	"bytes"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// residentCollector splits the process's resident memory (process_resident_memory_bytes) into
// its anonymous part, the memory the process itself holds (Go heap, stacks, runtime), and its
// file-backed part, pages of files it maps: bbolt maps each read model's file and reads it
// through that map, so every page of a read model it touches counts in the RSS. The read
// models keep every reservation, payment and wallet entry ever made, so the file part grows
// with the data on disk, while a leak shows in the anonymous part. On systems without
// /proc/self/status it reports nothing.
type residentCollector struct {
	anon, file *prometheus.Desc
}

func newResidentCollector() *residentCollector {
	return &residentCollector{
		anon: prometheus.NewDesc("booking_process_resident_anon_bytes",
			"Anonymous resident memory (RssAnon of /proc/self/status): the heap, stacks and runtime of the process.", nil, nil),
		file: prometheus.NewDesc("booking_process_resident_file_bytes",
			"File-backed resident memory (RssFile of /proc/self/status): pages of mapped files, mostly the read models' bbolt files.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *residentCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.anon
	ch <- c.file
}

// Collect implements prometheus.Collector.
func (c *residentCollector) Collect(ch chan<- prometheus.Metric) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	anon, okA := statusKB(status, "RssAnon:")
	file, okF := statusKB(status, "RssFile:")
	if okA {
		ch <- prometheus.MustNewConstMetric(c.anon, prometheus.GaugeValue, anon*1024)
	}
	if okF {
		ch <- prometheus.MustNewConstMetric(c.file, prometheus.GaugeValue, file*1024)
	}
}

// statusKB returns the value, in kB, of a line of /proc/self/status such as "RssAnon:  1234 kB".
func statusKB(status []byte, key string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte(key))
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) == 0 {
			return 0, false
		}
		v, err := strconv.ParseFloat(string(fields[0]), 64)
		return v, err == nil
	}
	return 0, false
}
