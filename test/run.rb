# frozen_string_literal: true

# Runs every Ruby suite (test/*_test.rb) in one process.
Dir[File.join(__dir__, "*_test.rb")].sort.each { |file| require file }
