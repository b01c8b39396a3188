# frozen_string_literal: true

# Rackup file for every server in the comparison (puma, falcon, ...).
require_relative "app"
run BenchApp
